package auth_test

import (
	"testing"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
)

// A Watch outlives the loss of its LISTEN connection: it reconnects, asks
// for a resync (notifications sent meanwhile are gone), and goes on.
func TestPostgresWatchSurvivesLostConnection(t *testing.T) {
	ctx := ctxT(t)
	dsn := authtest.PostgresDSN(t)
	s := authtest.Open(t, dsn)
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pgExec(t, dsn, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN sekisho_registry' AND pid <> pg_backend_pid()`)
	if c := recv(t, ch); c != (auth.Change{Kind: auth.ChangeResync}) {
		t.Fatalf("after the connection was lost: %+v, want a resync", c)
	}
	writer := authtest.Open(t, dsn)
	if err := writer.CreateDevice(ctx, device("acme", "pc", auth.DeviceActive)); err != nil {
		t.Fatal(err)
	}
	if c := recv(t, ch); c != (auth.Change{Tenant: "acme", Kind: auth.ChangeDevice}) {
		t.Errorf("after reconnecting: %+v", c)
	}
}
