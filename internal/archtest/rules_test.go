package archtest

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// checkImports returns every import of pkgs that table forbids, and every
// package that has no row.
func checkImports(table map[string]rule, pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		from, ok := relPath(p.ImportPath)
		if !ok {
			out = append(out, fmt.Sprintf("%s is not in module %s", p.ImportPath, modulePath))
			continue
		}
		if _, ok := table[from]; !ok {
			out = append(out, fmt.Sprintf("%s has no row in the rule table: add one to rules in internal/archtest/imports_test.go, with what DESIGN.md lets it import", from))
			continue
		}
		out = append(out, checkPkg(table, from, p.Imports, false)...)
		out = append(out, checkPkg(table, from, union(p.TestImports, p.XTestImports), true)...)
	}
	return out
}

// checkPkg checks the imports of from's code, or of its tests.
func checkPkg(table map[string]rule, from string, imports []string, inTest bool) []string {
	who := from
	if inTest {
		who += " (tests)"
	}
	var out []string
	for _, imp := range imports {
		to, ok := relPath(imp)
		if ok && !allowed(table, from, to, inTest) {
			out = append(out, fmt.Sprintf("%s imports %s, which DESIGN.md forbids (rule: %s)", who, to, why(table, from, to, inTest)))
		}
	}
	return out
}

// relPath returns the module-relative path of a package of the module.
func relPath(importPath string) (string, bool) {
	if importPath == modulePath {
		return ".", true
	}
	rel, ok := strings.CutPrefix(importPath, modulePath+"/")
	return rel, ok
}

// allowed reports whether from (or its tests) may import to. Tests may also
// import their own package, and tests and helpers may use helpers (see
// usableHelper).
func allowed(table map[string]rule, from, to string, inTest bool) bool {
	r := table[from]
	switch {
	case r.kind == kindTestOnly:
		return true
	case isCmd(to):
		return false
	case matches(r.imports, to):
		return true
	case inTest && to == from:
		return true
	case inTest || r.kind == kindHelper:
		return usableHelper(table, from, to)
	}
	return false
}

// usableHelper reports whether to is a helper that the tests of from, or the
// helper from, may use: a helper of a shared room (throwaway CAs, pipe
// pairs), of from's own package, or of a package that from may import. So a
// role's helper, if there is ever one, stays out of the other roles' tests.
func usableHelper(table map[string]rule, from, to string) bool {
	if t, ok := table[to]; !ok || t.kind != kindHelper {
		return false
	}
	parent := path.Dir(to)
	if p, ok := table[parent]; ok && p.kind == kindShared {
		return true
	}
	if f := table[from]; f.kind == kindHelper {
		from = path.Dir(from)
	}
	return parent == from || matches(table[from].imports, parent)
}

// matches reports whether to is in list, where "x/..." stands for every
// package under x.
func matches(list []string, to string) bool {
	for _, p := range list {
		if prefix, ok := strings.CutSuffix(p, "..."); ok && strings.HasPrefix(to, prefix) || p == to {
			return true
		}
	}
	return false
}

func isCmd(p string) bool { return p == "cmd" || strings.HasPrefix(p, "cmd/") }

// why names the rule of DESIGN.md that a forbidden import breaks.
func why(table map[string]rule, from, to string, inTest bool) string {
	f := table[from]
	t, known := table[to]
	switch {
	case isCmd(to):
		return "nothing imports cmd"
	case !known:
		return to + " has no row in the rule table, so nothing may import it"
	case t.kind == kindTestOnly:
		return "nothing imports a test-only package"
	case f.kind == kindShared:
		return only(from, f.imports)
	case f.kind == kindRole && t.kind == kindRole:
		return "the roles never import each other"
	case t.kind == kindRole:
		return "only demo and cmd import the roles"
	case t.kind == kindWiring:
		return "only cmd imports demo and loadgen"
	case t.kind == kindHelper && !inTest && f.kind != kindHelper:
		return "only tests, other helpers, demo, loadgen and cmd import test helpers"
	case t.kind == kindHelper:
		return "tests and helpers use the helpers of the shared rooms and of what their package may import"
	case f.kind == kindHelper:
		return "a test helper imports only its parent and what its parent may import"
	case inTest:
		return fmt.Sprintf("tests of %s import only what it may import, itself, and helpers", from)
	}
	return only(from, f.imports)
}

func only(from string, imports []string) string {
	if len(imports) == 0 {
		return from + " imports no package of the project"
	}
	return from + " imports only " + strings.Join(imports, ", ")
}

// sharedImports are the only project imports of the shared rooms.
var sharedImports = map[string][]string{"certs": {"auth"}}

// checkTable checks the rows of table against the invariants of DESIGN.md,
// so that a new or edited row cannot widen them.
func checkTable(table map[string]rule) []string {
	var out []string
	for _, from := range slices.Sorted(maps.Keys(table)) {
		r := table[from]
		if r.kind == kindHelper {
			parent := path.Dir(from)
			if p, ok := table[parent]; !ok || from != parent+"/"+path.Base(parent)+"test" || p.kind == kindHelper {
				out = append(out, fmt.Sprintf("helper %s must be <pkg>/<pkg>test under a package with a row", from))
			}
		}
		for _, to := range r.imports {
			if err := checkRowEntry(table, from, to); err != "" {
				out = append(out, fmt.Sprintf("row %s lists %s: %s", from, to, err))
			}
		}
	}
	return out
}

// checkRowEntry says why the row of from may not list to, or "".
func checkRowEntry(table map[string]rule, from, to string) string {
	f := table[from]
	t, known := table[to]
	switch {
	case to == "internal/...":
		if f.kind == kindShared {
			return only(from, sharedImports[from])
		}
		return ""
	case !known:
		return "not a row of the table (patterns: only internal/...)"
	case t.kind == kindCmd:
		return "nothing imports cmd"
	case t.kind == kindTestOnly:
		return "nothing imports a test-only package"
	case f.kind == kindShared && !slices.Contains(sharedImports[from], to):
		return only(from, sharedImports[from])
	case t.kind == kindRole && f.kind != kindCmd && from != "demo":
		return "only demo and cmd import the roles, which never import each other"
	case t.kind == kindWiring && f.kind != kindCmd:
		return "only cmd imports demo and loadgen"
	case t.kind == kindHelper && f.kind != kindCmd && f.kind != kindWiring && f.kind != kindHelper:
		return "only tests, other helpers, demo, loadgen and cmd import test helpers"
	case t.kind == kindHelper && f.kind == kindHelper && !usableHelper(table, from, to):
		return "helpers use the helpers of the shared rooms and of what their parent may import"
	case f.kind == kindHelper && t.kind != kindHelper && to != path.Dir(from) && !matches(table[path.Dir(from)].imports, to):
		return "a test helper imports only its parent and what its parent may import"
	}
	return ""
}
