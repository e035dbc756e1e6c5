package archtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

const modulePath = "github.com/sekisho/sekisho"

// kind is what a package is for; the invariants of DESIGN.md are stated in
// terms of kinds (see checkTable).
type kind int

const (
	kindCmd      kind = iota // cmd/...: wiring only, imported by nothing
	kindRole                 // gateway, connector, agent: never import each other
	kindShared               // tunnel, auth, certs, payload: what the roles share
	kindWiring               // demo, loadgen: imported only by cmd
	kindInternal             // internal/...: helpers shared by the rooms
	kindHelper               // <pkg>/<pkg>test: test helpers
	kindTestOnly             // e2e: tests only, may import anything
)

// rule is one row of the table: what a package is and which packages of
// the project its non-test code may import. Third-party and standard imports
// are free. Beyond its row, a package's tests may import the package itself
// and helpers (<pkg>/<pkg>test): those of the shared rooms, of the package
// itself and of the packages it may import; a helper's own code may use the
// same helpers as its parent's tests.
type rule struct {
	kind kind
	// imports are module-relative paths; "internal/..." means every
	// internal package (each of which needs its own row).
	imports []string
}

// rules is the table of DESIGN.md. Adding a package means adding a row;
// a row of a package that does not exist yet allows nothing by itself.
var rules = map[string]rule{
	"cmd/sekisho": {kindCmd, []string{"gateway", "connector", "agent", "tunnel", "auth", "certs", "payload", "demo", "loadgen", "certs/certstest", "internal/..."}},

	"gateway":   {kindRole, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"connector": {kindRole, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"agent":     {kindRole, []string{"auth", "certs", "payload", "internal/..."}},

	"tunnel":  {kindShared, nil},
	"auth":    {kindShared, nil},
	"payload": {kindShared, nil},
	"certs":   {kindShared, []string{"auth"}},

	"demo":    {kindWiring, []string{"gateway", "connector", "agent", "tunnel", "auth", "certs", "payload", "certs/certstest", "internal/..."}},
	"loadgen": {kindWiring, []string{"tunnel", "auth", "certs", "certs/certstest", "internal/..."}},

	"tunnel/tunneltest": {kindHelper, []string{"tunnel"}},
	"certs/certstest":   {kindHelper, []string{"certs", "auth"}},
	"auth/authtest":     {kindHelper, []string{"auth"}},

	"e2e": {kindTestOnly, nil},

	"internal/config":     {kindInternal, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"internal/proxyproto": {kindInternal, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"internal/archtest":   {kindInternal, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"internal/admin":      {kindInternal, []string{"tunnel", "auth", "certs", "payload", "internal/..."}},
	"internal/hist":       {kindInternal, []string{"internal/..."}},
	"internal/splice":     {kindInternal, []string{"internal/..."}},
	"internal/netwatch":   {kindInternal, []string{"internal/..."}},

	"internal/admin/admintest":       {kindHelper, []string{"internal/admin"}},
	"internal/netwatch/netwatchtest": {kindHelper, []string{"internal/netwatch"}},
}

// goosList are the systems whose build-constrained files are checked too
// (the agent runs on Windows PCs).
var goosList = []string{"linux", "windows", "darwin"}

func TestImportRules(t *testing.T) {
	pkgs := packages(t)
	for _, p := range pkgs {
		if p.Error != nil {
			// Its imports may be incomplete: fail closed.
			t.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
	}
	if v := checkImports(rules, pkgs); len(v) > 0 {
		t.Errorf("%d import rule violations (see DESIGN.md, \"Packages (rooms) and who may import whom\", and the table in internal/archtest/imports_test.go):\n\t%s",
			len(v), strings.Join(v, "\n\t"))
	}
}

func TestRuleTable(t *testing.T) {
	if v := checkTable(rules); len(v) > 0 {
		t.Errorf("the rule table breaks DESIGN.md:\n\t%s", strings.Join(v, "\n\t"))
	}
}

func TestDocFiles(t *testing.T) {
	for _, p := range packages(t) {
		if err := checkDoc(p.Dir); err != nil {
			t.Errorf("%s: %v", p.ImportPath, err)
		}
	}
}

// checkDoc requires dir/doc.go with a package comment.
func checkDoc(dir string) error {
	name := filepath.Join(dir, "doc.go")
	if _, err := os.Stat(name); err != nil {
		return fmt.Errorf("every package needs a doc.go that says what the room is for: %w", err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.PackageClauseOnly|parser.ParseComments)
	if err != nil {
		return fmt.Errorf("parse doc.go: %w", err)
	}
	if f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "" {
		return errors.New("doc.go has no package comment")
	}
	return nil
}

// pkg is what go list tells about a package.
type pkg struct {
	ImportPath   string
	Dir          string
	Imports      []string
	TestImports  []string
	XTestImports []string
	Error        *struct{ Err string }
}

// packages returns the module's packages, listed once per test binary.
func packages(t *testing.T) []pkg {
	t.Helper()
	pkgs, err := listOnce()
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

var listOnce = sync.OnceValues(listPackages)

// listPackages lists the module's packages once per system of goosList and
// merges their imports.
func listPackages() ([]pkg, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	goCmd, err := goCommand()
	if err != nil {
		return nil, err
	}
	merged := map[string]*pkg{}
	for _, goos := range goosList {
		cmd := exec.Command(goCmd, "list", "-e", "-deps=false", "-json", "./...")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS="+goos)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("GOOS=%s go list in %s: %w\n%s", goos, root, err, stderr.Bytes())
		}
		if err := mergeList(merged, out); err != nil {
			return nil, fmt.Errorf("GOOS=%s go list: %w", goos, err)
		}
	}
	var pkgs []pkg
	for _, p := range merged {
		pkgs = append(pkgs, *p)
	}
	slices.SortFunc(pkgs, func(a, b pkg) int { return strings.Compare(a.ImportPath, b.ImportPath) })
	return pkgs, nil
}

// mergeList decodes the JSON stream of go list and adds it to merged.
func mergeList(merged map[string]*pkg, out []byte) error {
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		m, ok := merged[p.ImportPath]
		if !ok {
			merged[p.ImportPath] = &p
			continue
		}
		m.Imports = union(m.Imports, p.Imports)
		m.TestImports = union(m.TestImports, p.TestImports)
		m.XTestImports = union(m.XTestImports, p.XTestImports)
		if m.Error == nil {
			m.Error = p.Error
		}
	}
}

func union(a, b []string) []string {
	s := slices.Concat(a, b)
	slices.Sort(s)
	return slices.Compact(s)
}

// moduleRoot walks up from the working directory to the directory of go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goCommand returns the go command of the toolchain running the test, or
// else the one on PATH.
func goCommand() (string, error) {
	name := "go"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	if goroot := runtime.GOROOT(); goroot != "" {
		if p := filepath.Join(goroot, "bin", name); fileExists(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("no go command in GOROOT/bin or on PATH: %w", err)
	}
	return p, nil
}

func fileExists(name string) bool {
	fi, err := os.Stat(name)
	return err == nil && !fi.IsDir()
}
