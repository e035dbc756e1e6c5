// Package archtest keeps the import rules of DESIGN.md ("Packages (rooms)
// and who may import whom"): its test lists every package of the module with
// go list and fails on an import that the rules forbid, on a package that has
// no row in its rule table, and on a package without a documented doc.go.
//
// Adding a package means adding a row to the table in imports_test.go; the
// table itself is checked against the design's invariants (the roles never
// import each other, tunnel, auth and payload import nothing of the project,
// and so on), so a row cannot quietly widen them.
//
// The package has no code outside its tests.
package archtest
