package deps

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const root = "../.."

// notApt are programs the code runs that no Debian package of the list
// provides: the Go toolchain and the binaries this repository builds.
var notApt = map[string]bool{"go": true, "hcpe": true, "hag": true, "hglab": true, "bench": true}

// readList parses mk/deps.list into program -> package and the set of packages.
func readList(t *testing.T) (map[string]string, map[string]bool) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "mk", "deps.list"))
	if err != nil {
		t.Fatalf("opening the dependency list: %v", err)
	}
	defer f.Close()
	progs, pkgs := map[string]string{}, map[string]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			t.Fatalf("mk/deps.list:%d: want \"program package\", got %q", n, line)
		}
		pkgs[fields[1]] = true
		if fields[0] != "-" {
			if p, dup := progs[fields[0]]; dup {
				t.Fatalf("mk/deps.list:%d: %s listed twice (%s, %s)", n, fields[0], p, fields[1])
			}
			progs[fields[0]] = fields[1]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the dependency list: %v", err)
	}
	return progs, pkgs
}

// strLit returns the value of a string literal expression.
func strLit(e ast.Expr) (string, bool) {
	b, ok := e.(*ast.BasicLit)
	if !ok || b.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(b.Value)
	return s, err == nil
}

// argv0 returns the program of an argv expression: a string literal, or
// the first element of the slice literal an append call starts from.
func argv0(e ast.Expr) (string, bool) {
	if name, ok := strLit(e); ok {
		return name, name != "" && !strings.ContainsAny(name, " /=")
	}
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) == 0 {
		return "", false
	}
	if fn, ok := call.Fun.(*ast.Ident); !ok || fn.Name != "append" {
		return "", false
	}
	lit, ok := call.Args[0].(*ast.CompositeLit)
	if !ok || len(lit.Elts) == 0 {
		return "", false
	}
	return argv0(lit.Elts[0])
}

// namedAt maps helpers that start a program to the index of the argument
// naming it: exec.LookPath, deploy's requireTool(t, name, pkg), bench's
// startProc(sp, ns, name, ...).
var namedAt = map[string]int{"LookPath": 0, "requireTool": 1, "startProc": 2}

// isContext reports whether e looks like a context argument: a ctx
// variable or a context.Background()/t.Context() call.
func isContext(e ast.Expr) bool {
	switch v := e.(type) {
	case *ast.Ident:
		return strings.Contains(strings.ToLower(v.Name), "ctx")
	case *ast.CallExpr:
		if sel, ok := v.Fun.(*ast.SelectorExpr); ok {
			switch sel.Sel.Name {
			case "Background", "TODO", "Context":
				return true
			}
		}
	}
	return false
}

// programs returns each literal program name an exec call site names, with
// where it is. Call sites: exec.Command(name, ...),
// exec.CommandContext(ctx, name, ...), and the namespace helpers'
// x.Run/Output/Start/Command/CombinedOutput(name, ...) (or with a context
// first); "ip netns exec NS prog" also yields prog. Calls that pass a
// function literal (t.Run's subtests) are not commands.
func programs(fset *token.FileSet, f *ast.File) map[string][]string {
	found := map[string][]string{}
	add := func(name string, pos token.Pos) {
		found[name] = append(found[name], fset.Position(pos).String())
	}
	methods := map[string]bool{"Run": true, "Output": true, "Start": true, "Command": true, "CommandContext": true, "CombinedOutput": true, "Cmd": true}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		var fname string
		switch fn := call.Fun.(type) {
		case *ast.SelectorExpr:
			fname = fn.Sel.Name
		case *ast.Ident:
			fname = fn.Name
		}
		// labproc.Start(ns, name, logPath, argv...) runs argv[0]; argv is
		// a literal or append([]string{prog, ...}, more...).
		if sel, ok := call.Fun.(*ast.SelectorExpr); ok && fname == "Start" && len(call.Args) > 3 {
			if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "labproc" {
				if name, ok := argv0(call.Args[3]); ok {
					add(name, call.Pos())
				}
				return true
			}
		}
		// Helpers that take the program at a fixed position.
		if i, ok := namedAt[fname]; ok && len(call.Args) > i {
			if name, ok := strLit(call.Args[i]); ok && name != "" {
				add(name, call.Pos())
			}
			return true
		}
		if _, isSel := call.Fun.(*ast.SelectorExpr); !isSel || !methods[fname] {
			return true
		}
		for _, a := range call.Args {
			if _, isFunc := a.(*ast.FuncLit); isFunc {
				return true
			}
		}
		args := call.Args
		// Skip a leading context argument (anything not a string literal
		// followed by a string literal).
		if len(args) >= 2 && isContext(args[0]) {
			args = args[1:]
		}
		if len(args) == 0 {
			return true
		}
		name, ok := strLit(args[0])
		if !ok || name == "" || strings.ContainsAny(name, " /=") || strings.ToLower(name) != name {
			return true
		}
		add(name, call.Pos())
		// ip netns exec <ns> <prog> ...
		if name == "ip" && len(args) >= 5 {
			a1, _ := strLit(args[1])
			a2, _ := strLit(args[2])
			if a1 == "netns" && a2 == "exec" {
				if p, ok := strLit(args[4]); ok {
					add(p, call.Pos())
				}
			}
		}
		return true
	})
	return found
}

// TestEveryExecutedProgramIsInstalled parses every Go file of the module
// and fails for a program a call site names that mk/deps.list lacks.
func TestEveryExecutedProgramIsInstalled(t *testing.T) {
	progs, _ := readList(t)
	fset := token.NewFileSet()
	used := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin" || n == "out") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		for p, at := range programs(fset, f) {
			used[p] = append(used[p], at...)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("parsing the module's Go files: %v", err)
	}
	// The walk must see the call sites we know of, or it checks nothing.
	for _, p := range []string{"ip", "ss", "nft", "ss-server"} {
		if len(used[p]) == 0 {
			t.Errorf("found no call site running %s: the parser misses call sites", p)
		}
	}
	var names []string
	for p := range used {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		if notApt[p] {
			continue
		}
		if _, ok := progs[p]; !ok {
			t.Errorf("%s is executed (%s) but not in mk/deps.list: add it with its Debian package", p, strings.Join(used[p], ", "))
		}
	}
	t.Logf("programs executed: %v", names)
}

// TestListedProgramsMapToPackages checks the list's shape: every program
// names one package, and the packages make deps installs for the CI include
// those the lab cannot run without.
func TestListedProgramsMapToPackages(t *testing.T) {
	progs, pkgs := readList(t)
	for prog, pkg := range progs {
		if pkg == "" || pkg == "-" {
			t.Errorf("%s maps to no package", prog)
		}
	}
	for _, want := range []string{"iproute2", "nftables", "iputils-ping", "shadowsocks-libev", "prometheus", "systemd", "ca-certificates"} {
		if !pkgs[want] {
			t.Errorf("package %s is missing from mk/deps.list", want)
		}
	}
}
