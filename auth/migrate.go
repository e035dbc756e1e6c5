package auth

import (
	"crypto/rand"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// The registry schema is a list of migrations per database, in
// schema/DIALECT/NNNN_name.sql: version NNNN counts from 1 without gaps and
// both databases have the same versions. The table schema_migrations holds
// one row per applied version. Migrations run in one transaction when a
// store opens; a database whose newest version is unknown to this binary is
// refused (ErrSchemaTooNew) rather than used by code that does not know its
// tables.
//
//go:embed schema
var schemaFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations returns the migrations of dialect ("sqlite", "postgres"),
// in order.
func loadMigrations(dialect string) ([]migration, error) {
	dir := path.Join("schema", dialect)
	entries, err := fs.ReadDir(schemaFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration %s/%s: want NNNN_name.sql", dir, e.Name())
		}
		if v != len(out)+1 {
			return nil, fmt.Errorf("migration %s/%s: want version %d", dir, e.Name(), len(out)+1)
		}
		b, err := fs.ReadFile(schemaFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration: %w", err)
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	return out, nil
}

// pending returns the migrations to apply to a database at version current.
func pending(all []migration, current int) ([]migration, error) {
	if current > len(all) {
		return nil, fmt.Errorf("%w: database schema version %d, this sekisho knows up to %d: upgrade sekisho",
			ErrSchemaTooNew, current, len(all))
	}
	return all[current:], nil
}

// newEpoch returns a fresh registry epoch: 128 random bits in hex.
func newEpoch() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random epoch: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
