package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// pgStore is the registry in PostgreSQL, shared by every connector of a
// tenant. Read-modify-writes lock their row (SELECT ... FOR UPDATE),
// versions come from one upserted row per tenant, and every change is
// announced with NOTIFY in the transaction that makes it, so that each
// process's Watch learns of it once it commits.
type pgStore struct {
	pool     *pgxpool.Pool
	listenTo *pgx.ConnConfig // for the LISTEN connection, outside the pool
	log      *zap.Logger
	hub      *hub

	ctx    context.Context // ends the listener
	cancel context.CancelFunc

	mu        sync.Mutex
	listening bool
	closed    bool
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Store = (*pgStore)(nil)

const (
	// notifyChannel carries "KIND:TENANT" payloads.
	notifyChannel = "sekisho_registry"
	// migrateLock is the advisory lock key that serialises migrations.
	migrateLock = 0x73656b6973686f // "sekisho"
	// listenIdle is how long the listener waits for a notification
	// before it checks its connection with a ping.
	listenIdle = 30 * time.Second
)

func openPostgres(ctx context.Context, dsn string, log *zap.Logger) (*pgStore, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open registry: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open registry: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &pgStore{pool: pool, listenTo: cfg.ConnConfig.Copy(), log: log, hub: newHub(), ctx: sctx, cancel: cancel}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open registry: %w", err)
	}
	return s, nil
}

func (s *pgStore) migrate(ctx context.Context) error {
	all, err := loadMigrations("postgres")
	if err != nil {
		return err
	}
	epoch, err := newEpoch()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
		if err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		todo, err := pending(all, current)
		if err != nil {
			return err
		}
		for _, m := range todo {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %d %s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
		}
		_, err = tx.Exec(ctx, `INSERT INTO meta (key, value) VALUES ('epoch', $1) ON CONFLICT (key) DO NOTHING`, epoch)
		if err != nil {
			return fmt.Errorf("create epoch: %w", err)
		}
		if len(todo) > 0 {
			s.log.Info("registry schema migrated", zap.String("database", "postgres"),
				zap.Int("from_version", current), zap.Int("to_version", len(all)))
		}
		return nil
	})
}

// notify announces a change; NOTIFY is delivered when tx commits.
func notify(ctx context.Context, tx pgx.Tx, c Change) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, string(c.Kind)+":"+c.Tenant); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

func parseChange(payload string) (Change, error) {
	kind, tenant, _ := strings.Cut(payload, ":")
	switch ChangeKind(kind) {
	case ChangeDevice, ChangeRevocation:
	default:
		return Change{}, fmt.Errorf("unknown change kind %q", kind)
	}
	if err := ValidTenant(tenant); err != nil {
		return Change{}, err
	}
	return Change{Tenant: tenant, Kind: ChangeKind(kind)}, nil
}

func (s *pgStore) Epoch(ctx context.Context) (string, error) {
	var epoch string
	if err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&epoch); err != nil {
		return "", fmt.Errorf("read registry epoch: %w", err)
	}
	return epoch, nil
}

func (s *pgStore) NextVersion(ctx context.Context, tenant string) (uint64, error) {
	if err := ValidTenant(tenant); err != nil {
		return 0, err
	}
	var v int64
	err := s.pool.QueryRow(ctx, `INSERT INTO snapshot_versions (tenant, version)
		VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
		ON CONFLICT (tenant) DO UPDATE SET version = greatest(snapshot_versions.version + 1, excluded.version)
		RETURNING version`, tenant).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("next snapshot version: %w", err)
	}
	return uint64(v), nil
}

func (s *pgStore) Watch(ctx context.Context) (<-chan Change, error) {
	if err := s.startListener(ctx); err != nil {
		return nil, err
	}
	return s.hub.watch(ctx)
}

// startListener starts the LISTEN loop once, and returns when it listens.
func (s *pgStore) startListener(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStoreClosed
	}
	if s.listening {
		return nil
	}
	conn, err := s.listen(ctx)
	if err != nil {
		return fmt.Errorf("watch registry: %w", err)
	}
	s.listening = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.listenLoop(conn)
	}()
	return nil
}

func (s *pgStore) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.listenTo)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// listenLoop hands notifications to the hub until the store closes. It
// pings an idle connection, and replaces a lost one (then asks watchers to
// resync: notifications sent meanwhile are gone).
func (s *pgStore) listenLoop(conn *pgx.Conn) {
	defer func() { closeConn(conn) }()
	for {
		err := s.receive(conn)
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("registry change listener lost its connection", zap.Error(err))
		closeConn(conn)
		if conn = s.relisten(); conn == nil {
			return
		}
		s.hub.publish(Change{Kind: ChangeResync})
	}
}

// receive publishes notifications until conn fails.
func (s *pgStore) receive(conn *pgx.Conn) error {
	for {
		ctx, cancel := context.WithTimeout(s.ctx, listenIdle)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case err == nil:
			c, err := parseChange(n.Payload)
			if err != nil {
				s.log.Warn("registry change notification ignored", zap.Error(err))
				continue
			}
			s.hub.publish(c)
		case s.ctx.Err() != nil:
			return err
		case errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err):
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			err := conn.Ping(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		default:
			return err
		}
	}
}

// relisten connects again with jittered exponential backoff; nil once the
// store closes.
func (s *pgStore) relisten() *pgx.Conn {
	b := backoff{min: 100 * time.Millisecond, max: 30 * time.Second}
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		conn, err := s.listen(ctx)
		cancel()
		if err == nil {
			return conn
		}
		d := b.next()
		s.log.Warn("registry change listener cannot reconnect", zap.Error(err), zap.Duration("retry_in", d))
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// closeConn closes conn and waits until its resources are released.
func closeConn(conn *pgx.Conn) {
	if conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Close(ctx)
	<-conn.PgConn().CleanupDone()
}

func (s *pgStore) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.wg.Wait()
		s.hub.close()
		s.pool.Close()
	})
	return nil
}

// isPgConflict reports whether err is a unique violation.
func isPgConflict(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505"
}
