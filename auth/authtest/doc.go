// Package authtest gives tests throwaway device registries: a SQLite file
// in the test's temporary directory, or a fresh PostgreSQL database on the
// server that $SEKISHO_TEST_POSTGRES names, dropped when the test ends.
package authtest
