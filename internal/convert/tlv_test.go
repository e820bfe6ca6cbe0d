package convert

import "testing"

// Append writes TLVs in table order and the RFC's figures list them by
// type: the table must stay sorted, one row per type.
func TestTLVTableInTypeOrder(t *testing.T) {
	for i := 1; i < len(tlvs); i++ {
		if tlvs[i-1].typ >= tlvs[i].typ {
			t.Errorf("tlvs[%d] (%v) does not come after tlvs[%d] (%v)", i, tlvs[i].typ, i-1, tlvs[i-1].typ)
		}
	}
	for i, e := range tlvs {
		if tlvIndex(e.typ) != i || e.typ.String() != e.name {
			t.Errorf("tlvs[%d]: lookup = %d, String = %q", i, tlvIndex(e.typ), e.typ.String())
		}
	}
}
