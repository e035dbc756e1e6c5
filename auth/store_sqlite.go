package auth

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// sqliteStore is the registry in one SQLite file (modernc.org/sqlite, no
// cgo), in WAL mode so readers never wait for the writer. Every write
// transaction is BEGIN IMMEDIATE, so it holds the write lock from its first
// statement: a read-modify-write cannot be overtaken. Writers of this
// process queue on a semaphore; other processes wait up to busyTimeout.
// Times are Unix microseconds and groups JSON arrays.
type sqliteStore struct {
	db        *sql.DB
	log       *zap.Logger
	hub       *hub
	writing   chan struct{} // a semaphore of one
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*sqliteStore)(nil)

const (
	// busyTimeout is how long SQLite waits for another process's write lock.
	busyTimeout = 10 * time.Second
	// maxSQLiteConns bounds the open connections (and files): one writer
	// and a few readers is all a registry needs.
	maxSQLiteConns = 8
)

func openSQLite(ctx context.Context, path string, log *zap.Logger) (*sqliteStore, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open registry: want a file path for SQLite, got %q", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if err := createOwnerOnly(abs, log); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", sqliteDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", abs, err)
	}
	db.SetMaxOpenConns(maxSQLiteConns)
	s := &sqliteStore{db: db, log: log, hub: newHub(), writing: make(chan struct{}, 1)}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open registry %s: %w", abs, err)
	}
	return s, nil
}

// sqliteDSN names file abs as a URI, so that no character of the path is
// taken for a parameter, with the settings every connection needs.
func sqliteDSN(abs string) string {
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // C:/x on Windows
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: p}).EscapedPath() + "?" + q.Encode()
}

// createOwnerOnly creates the registry file readable by its owner only. An
// existing file keeps its mode, with a warning if others may read it.
func createOwnerOnly(path string, log *zap.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	fi, err := f.Stat()
	f.Close()
	if err != nil {
		return fmt.Errorf("open registry: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("registry file is accessible to other users",
			zap.String("path", path), zap.Stringer("mode", fi.Mode().Perm()))
	}
	return nil
}

// write runs f in a write transaction.
func (s *sqliteStore) write(ctx context.Context, f func(*sql.Tx) error) error {
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writing }()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (s *sqliteStore) migrate(ctx context.Context) error {
	all, err := loadMigrations("sqlite")
	if err != nil {
		return err
	}
	epoch, err := newEpoch()
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`)
		if err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		todo, err := pending(all, current)
		if err != nil {
			return err
		}
		for _, m := range todo {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %d %s: %w", m.version, m.name, err)
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.version, m.name, time.Now().UnixMicro())
			if err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT (key) DO NOTHING`, epoch)
		if err != nil {
			return fmt.Errorf("create epoch: %w", err)
		}
		if len(todo) > 0 {
			s.log.Info("registry schema migrated", zap.String("database", "sqlite"),
				zap.Int("from_version", current), zap.Int("to_version", len(all)))
		}
		return nil
	})
}

func (s *sqliteStore) Epoch(ctx context.Context) (string, error) {
	var epoch string
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&epoch); err != nil {
		return "", fmt.Errorf("read registry epoch: %w", err)
	}
	return epoch, nil
}

func (s *sqliteStore) NextVersion(ctx context.Context, tenant string) (uint64, error) {
	if err := ValidTenant(tenant); err != nil {
		return 0, err
	}
	var v int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `INSERT INTO snapshot_versions (tenant, version) VALUES (?, ?)
			ON CONFLICT (tenant) DO UPDATE SET version = max(version + 1, excluded.version)
			RETURNING version`, tenant, time.Now().UnixMicro()).Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("next snapshot version: %w", err)
	}
	return uint64(v), nil
}

func (s *sqliteStore) Watch(ctx context.Context) (<-chan Change, error) {
	return s.hub.watch(ctx)
}

func (s *sqliteStore) Close() error {
	s.closeOnce.Do(func() {
		s.hub.close()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// isSQLiteConflict reports whether err is a primary key or unique violation.
func isSQLiteConflict(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || e.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// micros returns t in Unix microseconds, or nil (NULL) for the zero time.
func micros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMicro(v.Int64).UTC()
}
