package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

func TestTenantApply(t *testing.T) {
	acme := newKit(t, "acme")
	other := certstest.CA(t, "acme") // a second CA for the same tenant
	leaf := certstest.Agent(t, acme.ca, "pc-1").Leaf
	tn := newTenant(acme.tenantConfig())
	now := time.Now()

	snap := func(epoch string, version uint64) *tunnel.Snapshot { return acme.snapshot(epoch, version) }
	with := func(s *tunnel.Snapshot, mod func(*tunnel.Snapshot)) *tunnel.Snapshot { mod(s); return s }

	// Steps run in order on one tenant; after each, the state in force
	// must be wantEpoch/wantVersion.
	steps := []struct {
		name        string
		snap        *tunnel.Snapshot
		wantErr     error // errStale, errAny or nil
		wantEpoch   string
		wantVersion uint64
	}{
		{"first snapshot", snap("e1", 5), nil, "e1", 5},
		{"newer version replaces", snap("e1", 7), nil, "e1", 7},
		{"equal version is stale", snap("e1", 7), errStale, "e1", 7},
		{"older version is stale", snap("e1", 6), errStale, "e1", 7},
		{"new epoch replaces with a lower version", snap("e2", 1), nil, "e2", 1},
		{"old epoch comes back as new", snap("e1", 2), nil, "e1", 2},
		{"tenant mismatch", with(snap("e1", 10), func(s *tunnel.Snapshot) { s.Tenant = "beta" }), errAny, "e1", 2},
		{"empty bundle", with(snap("e1", 11), func(s *tunnel.Snapshot) { s.TrustBundle = nil }), errAny, "e1", 2},
		{"bundle of garbage", with(snap("e1", 12), func(s *tunnel.Snapshot) { s.TrustBundle = [][]byte{[]byte("not DER")} }), errAny, "e1", 2},
		{"non-CA certificate", with(snap("e1", 13), func(s *tunnel.Snapshot) {
			s.TrustBundle = append(s.TrustBundle, leaf.Raw)
		}), errAny, "e1", 2},
		{"invalid service", with(snap("e1", 14), func(s *tunnel.Snapshot) {
			s.Services = []tunnel.Service{{Name: "x", PathPrefix: "nope"}}
		}), errAny, "e1", 2},
		{"refused snapshot of a new epoch", with(snap("e9", 1), func(s *tunnel.Snapshot) { s.TrustBundle = nil }), errAny, "e1", 2},
		{"catalog not JSON", with(snap("e1", 3), func(s *tunnel.Snapshot) { s.Catalog = []byte(`{"entries": 7`) }), errAny, "e1", 2},
		{"catalog entry unsigned", with(snap("e1", 3), func(s *tunnel.Snapshot) {
			s.Catalog = []byte(`{"entries": [{"path": "/p", "sha256": "` + strings.Repeat("a", 64) + `", "size": 1, "sources": ["relay"]}]}`)
		}), errAny, "e1", 2},
		{"catalog source not a URL", with(snap("e1", 3), func(s *tunnel.Snapshot) {
			s.Catalog = []byte(`{"entries": [{"path": "/p", "sha256": "` + strings.Repeat("a", 64) + `", "size": 1, "sources": ["javascript:x"],
				"expires": "2030-01-01T00:00:00Z", "key_id": "k", "signature": "c2ln"}]}`)
		}), errAny, "e1", 2},
		{"catalog policy only", with(snap("e1", 3), func(s *tunnel.Snapshot) {
			s.Catalog = []byte(`{"relay": {"path_prefixes": ["/patches/"], "size_threshold": 1048576}}`)
		}), nil, "e1", 3},
		{"two CAs, newer, no catalog", with(snap("e1", 15), func(s *tunnel.Snapshot) {
			s.TrustBundle = append(s.TrustBundle, other.Cert.Raw)
		}), nil, "e1", 15},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := tn.state.Load()
			err := tn.apply(st.snap, now)
			switch {
			case st.wantErr == nil && err != nil:
				t.Fatalf("apply: %v", err)
			case st.wantErr == errStale && !errors.Is(err, errStale):
				t.Fatalf("apply = %v, want errStale", err)
			case st.wantErr == errAny && (err == nil || errors.Is(err, errStale)):
				t.Fatalf("apply = %v, want a refusal", err)
			}
			cur := tn.state.Load()
			if cur == nil {
				t.Fatal("no state in force")
			}
			if cur.snap.Epoch != st.wantEpoch || cur.snap.Version != st.wantVersion {
				t.Errorf("state in force is %s/%d, want %s/%d", cur.snap.Epoch, cur.snap.Version, st.wantEpoch, st.wantVersion)
			}
			if err != nil && cur != before {
				t.Error("a refused snapshot replaced the state")
			}
			if err == nil && cur.snap != st.snap {
				t.Error("an accepted snapshot is not the one in force")
			}
		})
	}
	if st := tn.state.Load(); len(st.cas) != 2 || st.roots == nil {
		t.Errorf("final state has %d CAs, want 2", len(st.cas))
	}
}

// errAny marks a step that must be refused for a reason of its own.
var errAny = errors.New("any refusal")

func TestTenantApplyBuildsRootsAndRoutes(t *testing.T) {
	acme := newKit(t, "acme")
	tn := newTenant(acme.tenantConfig())
	snap := acme.snapshot("e1", 1, tunnel.Service{Name: "api", PathPrefix: "/api"})
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := tn.apply(snap, at); err != nil {
		t.Fatal(err)
	}
	st := tn.state.Load()
	if !st.received.Equal(at) {
		t.Errorf("received = %v, want %v", st.received, at)
	}
	if svc := st.match("h", "/api/x"); svc == nil || svc.Name != "api" {
		t.Errorf("route of /api/x = %v, want api", svc)
	}
	good := certstest.Agent(t, acme.ca, "pc-1")
	if _, err := auth.VerifyAgent([]*x509.Certificate{good.Leaf}, "acme", st.roots, time.Now()); err != nil {
		t.Errorf("agent of the pushed CA does not verify against the roots: %v", err)
	}
	stranger := certstest.Agent(t, certstest.CA(t, "acme"), "pc-2")
	if _, err := auth.VerifyAgent([]*x509.Certificate{stranger.Leaf}, "acme", st.roots, time.Now()); err == nil {
		t.Error("agent of another CA verifies against the roots")
	}
}

func TestTenantApplyAgentCAPins(t *testing.T) {
	acme := newKit(t, "acme")
	rogue := certstest.CA(t, "acme")
	rollover := certstest.CA(t, "acme")
	cfg := acme.tenantConfig()
	cfg.AgentCAPins = []auth.Pin{auth.PinOfCert(acme.ca.Cert), auth.PinOfCert(rollover.Cert)}
	tn := newTenant(cfg)
	now := time.Now()

	tests := []struct {
		name   string
		bundle [][]byte
		ok     bool
	}{
		{"pinned CA", [][]byte{acme.ca.Cert.Raw}, true},
		{"both pinned CAs", [][]byte{acme.ca.Cert.Raw, rollover.Cert.Raw}, true},
		{"unpinned CA alone", [][]byte{rogue.Cert.Raw}, false},
		{"unpinned CA beside a pinned one", [][]byte{acme.ca.Cert.Raw, rogue.Cert.Raw}, false},
	}
	version := uint64(0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			version++
			before := tn.state.Load()
			snap := acme.snapshot("e1", version)
			snap.TrustBundle = tt.bundle
			err := tn.apply(snap, now)
			if tt.ok != (err == nil) {
				t.Fatalf("apply = %v, want ok=%v", err, tt.ok)
			}
			if !tt.ok && tn.state.Load() != before {
				t.Error("a refused snapshot replaced the state")
			}
		})
	}
}

// testSession serves a tenant with the gateway end of a fresh tunnel.
func testSession(t *testing.T, id string) *tunnelSession {
	_, server := tunneltest.Pair(t, tunnel.Config{})
	return &tunnelSession{sess: server, connectorID: id}
}

func TestTenantPick(t *testing.T) {
	tn := newTenant(TenantConfig{Name: "acme"})
	if tn.pick() != nil || tn.numSessions() != 0 {
		t.Fatal("a tenant without sessions picked one")
	}
	a, b, c := testSession(t, "a"), testSession(t, "b"), testSession(t, "c")
	for _, s := range []*tunnelSession{a, b, c, a} { // a twice: added once
		tn.addSession(s)
	}
	if n := tn.numSessions(); n != 3 {
		t.Fatalf("numSessions = %d, want 3", n)
	}

	t.Run("spreads over every session", func(t *testing.T) {
		seen := map[string]int{}
		for range 30 {
			seen[tn.pick().connectorID]++
		}
		for _, id := range []string{"a", "b", "c"} {
			if seen[id] != 10 {
				t.Errorf("picks = %v, want 10 each", seen)
				break
			}
		}
	})

	t.Run("prefers the session with fewest streams", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		for _, s := range []*tunnelSession{a, b} {
			st, err := s.sess.OpenStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
		}
		for range 5 {
			if got := tn.pick(); got != c {
				t.Fatalf("picked %s, want c (no open streams)", got.connectorID)
			}
		}
	})

	t.Run("skips dead sessions", func(t *testing.T) {
		b.sess.Close()
		<-b.sess.Done()
		if n := tn.numSessions(); n != 2 {
			t.Errorf("numSessions = %d with one dead session, want 2", n)
		}
		for range 12 {
			if got := tn.pick(); got == b {
				t.Fatal("picked a dead session")
			}
		}
	})

	t.Run("removed and all dead", func(t *testing.T) {
		tn.removeSession(a)
		tn.removeSession(a) // twice is harmless
		if n := tn.numSessions(); n != 1 {
			t.Errorf("numSessions = %d, want 1", n)
		}
		c.sess.Close()
		<-c.sess.Done()
		if got := tn.pick(); got != nil {
			t.Errorf("picked %s, want none: every session is dead", got.connectorID)
		}
		if n := tn.numSessions(); n != 0 {
			t.Errorf("numSessions = %d, want 0", n)
		}
	})
}
