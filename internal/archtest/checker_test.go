package archtest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func mod(rel ...string) []string {
	var out []string
	for _, r := range rel {
		out = append(out, modulePath+"/"+r)
	}
	return out
}

// The checker fails on synthetic packages that break each rule, and only on
// those.
func TestCheckImports(t *testing.T) {
	pkgs := []pkg{
		{ImportPath: modulePath + "/gateway", Imports: append(mod("tunnel", "auth", "certs", "payload", "internal/config", "internal/proxyproto"), "net/http", "go.uber.org/zap"),
			TestImports: mod("certs/certstest", "tunnel/tunneltest"), XTestImports: mod("gateway", "agent")},
		{ImportPath: modulePath + "/agent", Imports: mod("gateway", "auth", "certs/certstest")},
		{ImportPath: modulePath + "/connector", Imports: mod("cmd/sekisho")},
		{ImportPath: modulePath + "/tunnel", Imports: mod("internal/config"), XTestImports: mod("tunnel", "tunnel/tunneltest", "certs/certstest")},
		{ImportPath: modulePath + "/auth", XTestImports: mod("certs")},
		{ImportPath: modulePath + "/certs", Imports: mod("auth", "payload"), XTestImports: mod("certs", "certs/certstest")},
		{ImportPath: modulePath + "/demo", Imports: mod("gateway", "connector", "agent", "certs/certstest", "loadgen")},
		{ImportPath: modulePath + "/loadgen", Imports: mod("tunnel", "agent")},
		{ImportPath: modulePath + "/cmd/sekisho", Imports: mod("demo", "loadgen", "gateway", "certs/certstest")},
		{ImportPath: modulePath + "/tunnel/tunneltest", Imports: mod("tunnel", "certs/certstest", "auth")},
		{ImportPath: modulePath + "/certs/certstest", Imports: mod("certs", "auth")},
		{ImportPath: modulePath + "/internal/config", Imports: mod("auth", "internal/proxyproto", "connector", "e2e")},
		{ImportPath: modulePath + "/e2e", Imports: mod("gateway"), TestImports: mod("gateway", "agent", "demo", "certs/certstest")},
		{ImportPath: modulePath + "/newroom", Imports: mod("auth")},
		{ImportPath: "example.com/elsewhere"},
	}
	want := []string{
		"gateway (tests) imports agent, which DESIGN.md forbids (rule: the roles never import each other)",
		"agent imports gateway, which DESIGN.md forbids (rule: the roles never import each other)",
		"agent imports certs/certstest, which DESIGN.md forbids (rule: only tests, other helpers, demo, loadgen and cmd import test helpers)",
		"connector imports cmd/sekisho, which DESIGN.md forbids (rule: nothing imports cmd)",
		"tunnel imports internal/config, which DESIGN.md forbids (rule: tunnel imports no package of the project)",
		"auth (tests) imports certs, which DESIGN.md forbids (rule: auth imports no package of the project)",
		"certs imports payload, which DESIGN.md forbids (rule: certs imports only auth)",
		"demo imports loadgen, which DESIGN.md forbids (rule: only cmd imports demo and loadgen)",
		"loadgen imports agent, which DESIGN.md forbids (rule: only demo and cmd import the roles)",
		"tunnel/tunneltest imports auth, which DESIGN.md forbids (rule: a test helper imports only its parent and what its parent may import)",
		"internal/config imports connector, which DESIGN.md forbids (rule: only demo and cmd import the roles)",
		"internal/config imports e2e, which DESIGN.md forbids (rule: nothing imports a test-only package)",
		"newroom has no row in the rule table: add one to rules in internal/archtest/imports_test.go, with what DESIGN.md lets it import",
		"example.com/elsewhere is not in module " + modulePath,
	}
	got := checkImports(rules, pkgs)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing violation: %s", w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			t.Errorf("unexpected violation: %s", g)
		}
	}
}

// The real table keeps DESIGN.md; rows that would widen it are caught.
func TestCheckTable(t *testing.T) {
	broken := map[string]rule{}
	for k, v := range rules {
		broken[k] = v
	}
	broken["agent"] = rule{kindRole, []string{"gateway", "auth"}}
	broken["tunnel"] = rule{kindShared, []string{"auth"}}
	broken["payload"] = rule{kindShared, []string{"internal/..."}}
	broken["loadgen"] = rule{kindWiring, []string{"connector", "demo"}}
	broken["internal/config"] = rule{kindInternal, []string{"certs/certstest", "e2e", "cmd/sekisho", "nope"}}
	broken["certs/certstest"] = rule{kindHelper, []string{"certs", "gateway"}}
	broken["certs/fakes"] = rule{kindHelper, []string{"certs"}}
	want := []string{
		"row agent lists gateway: only demo and cmd import the roles, which never import each other",
		"row tunnel lists auth: tunnel imports no package of the project",
		"row payload lists internal/...: payload imports no package of the project",
		"row loadgen lists connector: only demo and cmd import the roles, which never import each other",
		"row loadgen lists demo: only cmd imports demo and loadgen",
		"row internal/config lists certs/certstest: only tests, other helpers, demo, loadgen and cmd import test helpers",
		"row internal/config lists e2e: nothing imports a test-only package",
		"row internal/config lists cmd/sekisho: nothing imports cmd",
		"row internal/config lists nope: not a row of the table (patterns: only internal/...)",
		"row certs/certstest lists gateway: only demo and cmd import the roles, which never import each other",
		"helper certs/fakes must be <pkg>/<pkg>test under a package with a row",
	}
	got := checkTable(broken)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("checkTable =\n\t%s\nwant\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestCheckDoc(t *testing.T) {
	tests := []struct {
		name, doc string // doc "" means no doc.go
		ok        bool
	}{
		{"no doc.go", "", false},
		{"no package comment", "package x\n", false},
		{"detached comment", "// Package x is a room.\n\npackage x\n", false},
		{"documented", "// Package x is a room.\npackage x\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.doc != "" {
				if err := os.WriteFile(filepath.Join(dir, "doc.go"), []byte(tt.doc), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := checkDoc(dir); (err == nil) != tt.ok {
				t.Errorf("checkDoc = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
