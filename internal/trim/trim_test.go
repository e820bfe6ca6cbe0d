package trim

import "testing"

func TestObserve(t *testing.T) {
	cases := []struct {
		name  string
		seq   []int
		frees []int // indexes of seq where a release is due
	}{
		{"steady", []int{0, 100, 1000, 1000, 1000}, nil},
		{"all close", []int{0, 1000, 0}, []int{2}},
		{"close gradually", []int{1000, 900, 600, 500, 300, 0}, []int{3, 5}},
		{"second wave closes", []int{1000, 400, 400, 2000, 900}, []int{1, 4}},
		{"too few to matter", []int{300, 0}, nil},
		{"half not reached", []int{2000, 1200, 1100}, nil},
		{"release then the rest", []int{4000, 1900, 0}, []int{1, 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			n := 0
			tr := Trimmer{MinDrop: 500, free: func() { n++ }}
			for i, open := range tc.seq {
				if tr.Observe(open) {
					got = append(got, i)
				}
			}
			if len(got) != len(tc.frees) || n != len(got) {
				t.Fatalf("released at %v (%d calls), want %v", got, n, tc.frees)
			}
			for i := range got {
				if got[i] != tc.frees[i] {
					t.Fatalf("released at %v, want %v", got, tc.frees)
				}
			}
		})
	}
}
