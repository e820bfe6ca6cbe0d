package cpe

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"hybridgw/internal/config"
)

// reloadClass is what a reload does with one config field.
type reloadClass int

const (
	// restart: Reload cannot apply it; restartOnly must report a change.
	restart reloadClass = iota + 1
	// live: Reload applies it; restartOnly must not report it.
	live
	// parsed: the field is another field's parsed form or source (down_rate
	// and DownBps, key and KeyRaw); the one Reload compares is classified.
	parsed
)

// hcpeFields classifies every field of config.HCPE by path: yaml names,
// Go names for fields not in the file, [] for a list element. The longest
// matching prefix wins, so a section is classified at once and a new field
// in it follows; a new section, or a new field a reload must treat
// differently from its section, is added here (and to restartOnly or to
// reload) or TestReloadClassifiesEveryField fails.
var hcpeFields = map[string]reloadClass{
	"log":                 restart,
	"lan":                 restart,
	"tun":                 restart,
	"uplinks[]":           restart,
	"uplinks[].role":      live,
	"uplinks[].DownBps":   live,
	"uplinks[].UpBps":     live,
	"uplinks[].down_rate": parsed, // DownBps
	"uplinks[].up_rate":   parsed, // UpBps
	"uplinks[].Auto":      parsed, // addresses
	"uplinks[].Addrs":     parsed, // addresses
	"uplinks[].GWs":       parsed, // gateways
	"hag":                 restart,
	"hag.key":             parsed, // KeyRaw
	"hag.key_file":        parsed, // KeyRaw
	"hag.Addrs":           parsed, // addresses
	"bypass":              live,
	"bypass.destinations": parsed, // Dsts
	"bypass.ports":        parsed, // PortRanges
	"bypass.sources":      parsed, // Srcs
	"limits":              restart,
	"policy":              live,
	"pool":                restart,
	"metrics":             restart,
	"admin":               restart,
}

func classOf(path string) (reloadClass, string) {
	best := ""
	for p := range hcpeFields {
		if (path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[")) && len(p) > len(best) {
			best = p
		}
	}
	return hcpeFields[best], best
}

// configField is one leaf of the config struct: its path and how to reach
// it from the root (the first element of a list).
type configField struct {
	path string
	get  func(root reflect.Value) reflect.Value
}

// configFields walks t, a struct of package config, down to the fields
// that are not themselves config structs.
func configFields(t reflect.Type, path string, get func(reflect.Value) reflect.Value) []configField {
	pkg := t.PkgPath()
	var out []configField
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name := sf.Name
		if tag, _, _ := strings.Cut(sf.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
			name = tag
		}
		if path != "" {
			name = path + "." + name
		}
		field := func(root reflect.Value) reflect.Value { return get(root).Field(i) }
		switch ft := sf.Type; {
		case ft.Kind() == reflect.Struct && ft.PkgPath() == pkg:
			out = append(out, configFields(ft, name, field)...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem().PkgPath() == pkg && hasYAMLFields(ft.Elem()):
			out = append(out, configFields(ft.Elem(), name+"[]", func(root reflect.Value) reflect.Value { return field(root).Index(0) })...)
		default:
			out = append(out, configField{name, field})
		}
	}
	return out
}

func hasYAMLFields(t reflect.Type) bool {
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
			return true
		}
	}
	return false
}

// change gives v another value of its type.
func change(tb testing.TB, path string, v reflect.Value) {
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 0.125)
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	default:
		tb.Fatalf("%s: no way to change a %s; teach change()", path, v.Type())
	}
}

// TestReloadClassifiesEveryField changes each field of a loaded config in
// turn and checks that restartOnly reports exactly the fields a reload
// cannot apply, so that a new field is neither silently ignored by a reload
// nor reported for a restart it does not need.
func TestReloadClassifiesEveryField(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hcpe.yaml")
	if err := os.WriteFile(file, []byte(`lan:
  interfaces: [lan]
uplinks:
  - {name: dsl, interface: dsl, role: primary, down_rate: 20mbit, up_rate: 5mbit}
  - {name: lte, interface: lte, role: overflow, down_rate: 40mbit, up_rate: 10mbit}
hag:
  addresses: [198.51.100.100]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func() *config.HCPE {
		c, err := config.LoadHCPE(file)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	used := map[string]bool{}
	fields := configFields(reflect.TypeFor[config.HCPE](), "", func(root reflect.Value) reflect.Value { return root })
	for _, f := range fields {
		class, by := classOf(f.path)
		used[by] = true
		old, nw := load(), load()
		change(t, f.path, f.get(reflect.ValueOf(nw).Elem()))
		got := restartOnly(old, nw)
		switch class {
		case restart:
			if len(got) == 0 {
				t.Errorf("%s changed: restartOnly reports nothing, but a reload does not apply it (hcpeFields[%q])", f.path, by)
			}
		case live:
			if len(got) != 0 {
				t.Errorf("%s changed: restartOnly reports %v, but a reload applies it (hcpeFields[%q])", f.path, got, by)
			}
			if strings.HasPrefix(f.path, "bypass.") && sameBypass(old.Bypass, nw.Bypass) {
				t.Errorf("%s changed: sameBypass sees no change, so a reload keeps the old rules", f.path)
			}
		case parsed:
		default:
			t.Errorf("%s is not classified: add it to hcpeFields, and to restartOnly if a reload cannot apply it", f.path)
		}
	}
	var stale []string
	for p := range hcpeFields {
		if !used[p] {
			stale = append(stale, p)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("hcpeFields entries that match no field: %v", stale)
	}
	walked := map[string]bool{}
	for _, f := range fields {
		walked[f.path] = true
	}
	for _, p := range []string{"uplinks[].probe.interval", "hag.KeyRaw", "admin.tcp_exposes_reload_and_pprof"} {
		if !walked[p] {
			t.Errorf("the walk missed %s", p)
		}
	}
}
