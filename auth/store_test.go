package auth_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// backend is one database the registry runs on, as the suite needs it.
type backend struct {
	name string
	// newDSN returns the DSN of a fresh, empty database.
	newDSN func(t *testing.T) string
	// exec runs a statement on the database behind the store's back.
	exec func(t *testing.T, dsn, stmt string)
	// watchAcross says whether a change made through one Store value
	// reaches Watch on another that shares the database.
	watchAcross bool
}

var backends = []backend{
	{name: "sqlite", newDSN: func(t *testing.T) string { return authtest.SQLiteDSN(t) }, exec: sqliteExec},
	{name: "postgres", newDSN: func(t *testing.T) string { return authtest.PostgresDSN(t) }, exec: pgExec, watchAcross: true},
}

func sqliteExec(t *testing.T, dsn, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func pgExec(t *testing.T, dsn, stmt string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestStore runs the one store suite against every database.
func TestStore(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { runStoreSuite(t, b) })
	}
}

// runStoreSuite checks every behaviour of auth.Store on b. Each test opens
// its own fresh database.
func runStoreSuite(t *testing.T, b backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"TokenLifecycle", testTokenLifecycle},
		{"TokenUsesUnderConcurrency", testTokenConcurrency},
		{"TokenListAndDelete", testTokenListDelete},
		{"DeviceCRUD", testDeviceCRUD},
		{"DeviceFilters", testDeviceFilters},
		{"UpdateDeviceTransaction", testUpdateDevice},
		{"UpdateDeviceConcurrent", testUpdateDeviceConcurrent},
		{"Revoke", testRevoke},
		{"RevocationWindow", testRevocationWindow},
		{"AuditLog", testAuditLog},
		{"Epoch", testEpoch},
		{"NextVersion", testNextVersion},
		{"NextVersionAfterRestore", testNextVersionRestore},
		{"Watch", testWatch},
		{"WatchMergesForSlowReceiver", testWatchMerge},
		{"WatchEnds", testWatchEnds},
		{"Migrations", testMigrations},
		{"ConcurrentOpen", testConcurrentOpen},
		{"RefusesInvalidInput", testInvalidInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, b)
		})
	}
}

// open opens a fresh registry on b.
func open(t *testing.T, b backend) (auth.Store, string) {
	t.Helper()
	dsn := b.newDSN(t)
	return authtest.Open(t, dsn), dsn
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestOpenStoreRefusesUnknownDSN(t *testing.T) {
	for _, dsn := range []string{"", "mysql://x/y", "sqlite:", "sqlite::memory:", ":memory:", "file:x.db"} {
		if s, err := auth.OpenStore(context.Background(), dsn, nil); err == nil {
			s.Close()
			t.Errorf("OpenStore(%q) succeeded", dsn)
		}
	}
}

func TestSQLiteFileOwnerOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	path := filepath.Join(t.TempDir(), "reg.db")
	s := authtest.Open(t, path) // a plain path means SQLite
	ctx := ctxT(t)
	if _, err := s.NextVersion(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want owner only", filepath.Base(p), fi.Mode().Perm())
		}
	}
}

// A path with URI-special characters names a file, not parameters.
func TestSQLiteOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a dir?x=1#frag%20")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "reg.db")
	s, err := auth.OpenStore(ctxT(t), "sqlite:"+path, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("registry not at %s: %v", path, err)
	}
}

// Opening a database migrated by a newer sekisho fails with a clear error.
func testMigrations(t *testing.T, b backend) {
	ctx := ctxT(t)
	dsn := b.newDSN(t)
	s, err := auth.OpenStore(ctx, dsn, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("fresh database: %v", err)
	}
	epoch, err := s.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Reopening applies nothing (a second version 1 row would violate the
	// primary key) and keeps the data.
	s, err = auth.OpenStore(ctx, dsn, zaptest.NewLogger(t))
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if again, _ := s.Epoch(ctx); again != epoch {
		t.Errorf("epoch changed on reopen: %s, then %s", epoch, again)
	}
	s.Close()

	b.exec(t, dsn, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', "+
		map[bool]string{true: "now()", false: "0"}[b.name == "postgres"]+")")
	s, err = auth.OpenStore(ctx, dsn, zaptest.NewLogger(t))
	if err == nil {
		s.Close()
		t.Fatal("opened a database of schema version 999")
	}
	if !errors.Is(err, auth.ErrSchemaTooNew) || !strings.Contains(err.Error(), "999") {
		t.Errorf("err = %v, want ErrSchemaTooNew naming version 999", err)
	}
}

// Several connectors starting at once on a fresh database migrate it once.
func testConcurrentOpen(t *testing.T, b backend) {
	ctx := ctxT(t)
	dsn := b.newDSN(t)
	const n = 4
	type result struct {
		s   auth.Store
		err error
	}
	results := make(chan result, n)
	for range n {
		go func() {
			s, err := auth.OpenStore(ctx, dsn, zaptest.NewLogger(t))
			results <- result{s, err}
		}()
	}
	epochs := map[string]bool{}
	for range n {
		r := <-results
		if r.err != nil {
			t.Errorf("open: %v", r.err)
			continue
		}
		e, err := r.s.Epoch(ctx)
		if err != nil {
			t.Error(err)
		}
		epochs[e] = true
		r.s.Close()
	}
	if len(epochs) != 1 {
		t.Errorf("%d epochs for one database", len(epochs))
	}
}

func testEpoch(t *testing.T, b backend) {
	ctx := ctxT(t)
	s, dsn := open(t, b)
	e1, err := s.Epoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(e1) != 32 {
		t.Errorf("epoch %q: want 32 hex digits", e1)
	}
	if e2, _ := authtest.Open(t, dsn).Epoch(ctx); e2 != e1 {
		t.Errorf("second store on one database: epoch %q, want %q", e2, e1)
	}
	other, _ := open(t, b)
	if e3, _ := other.Epoch(ctx); e3 == e1 {
		t.Error("two databases share an epoch")
	}
}
