package authtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/sekisho/sekisho/auth"
)

// EnvPostgres names the environment variable that holds the DSN of a
// PostgreSQL database whose role may CREATE DATABASE, for example
// postgres://sekisho:sekisho@127.0.0.1:5432/sekisho_test?sslmode=disable.
const EnvPostgres = "SEKISHO_TEST_POSTGRES"

// dbPrefix starts the name of every database PostgresDSN creates.
const dbPrefix = "sekisho_t_"

// SQLiteDSN returns the DSN of a new SQLite registry in t's temporary
// directory.
func SQLiteDSN(t testing.TB) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "registry.db")
}

// PostgresDSN creates an empty database on the server that EnvPostgres
// names and returns its DSN; the database is dropped when t ends. Without
// EnvPostgres it skips t, or fails it when $CI is true: CI must run the
// PostgreSQL tests.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvPostgres)
	if base == "" {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("PostgreSQL required in CI: set %s to a DSN whose role may CREATE DATABASE", EnvPostgres)
		}
		t.Skipf("%s is not set: skipping the PostgreSQL registry", EnvPostgres)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s: want a postgres:// URL", EnvPostgres)
	}
	var b [8]byte
	rand.Read(b[:])
	name := dbPrefix + hex.EncodeToString(b[:])
	admin(t, base, "CREATE DATABASE "+name)
	// Not WITH (FORCE): that cannot end autovacuum workers, which plain
	// DROP DATABASE stops; and a connection left open by the test should
	// fail it rather than be cut.
	t.Cleanup(func() { admin(t, base, "DROP DATABASE IF EXISTS "+name) })
	u.Path = "/" + name
	return u.String()
}

// admin runs one statement on the database that base names.
func admin(t testing.TB, base, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvPostgres, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// Open opens the registry at dsn, logging to t, and closes it when t ends.
func Open(t testing.TB, dsn string) auth.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := auth.OpenStore(ctx, dsn, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close registry: %v", err)
		}
	})
	return s
}
