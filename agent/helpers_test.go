package agent

import (
	"context"
	"crypto/x509"
	"log"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// config returns an agent config for this gateway, state in dir.
func (g *fakeGateway) config(t *testing.T, dir string) Config {
	return Config{
		Gateways: []GatewayConfig{{Address: g.addr, RootCAs: g.server.Roots}},
		StateDir: dir,
		Logger:   zaptest.NewLogger(t),
	}
}

// provision writes an identity issued as if at now into dir, as an
// enrollment would, and returns it.
func (g *fakeGateway) provision(t *testing.T, dir string, now time.Time, lifetime time.Duration) *Identity {
	t.Helper()
	key, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := g.ca.IssueAgent(certs.AgentRequest{DeviceID: "d-0042", PublicKey: key.Public(), Now: now, Lifetime: lifetime})
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.PrincipalOf(leaf)
	if err != nil {
		t.Fatal(err)
	}
	id := &Identity{Key: key, Chain: []*x509.Certificate{leaf, g.ca.Cert}, Principal: p,
		CatalogKeys: []CatalogKey{{ID: "k0", PublicKey: g.catalog}}}
	if err := (store{dir: dir}).save(id); err != nil {
		t.Fatal(err)
	}
	return id
}

// newAgent provisions an identity valid now and returns an agent with
// cfg (from g.config) adjusted by adjust.
func (g *fakeGateway) newAgent(t *testing.T, adjust func(*Config)) *Agent {
	t.Helper()
	dir := t.TempDir()
	g.provision(t, dir, time.Now(), 3*time.Hour)
	cfg := g.config(t, dir)
	if adjust != nil {
		adjust(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// runAgent runs a until the test ends, once its listeners are bound.
func runAgent(t *testing.T, a *Agent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	case <-time.After(hang):
		t.Fatal("agent not ready")
	}
}

func (g *fakeGateway) seenConnects() []seenConnect {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seenConnect(nil), g.connects...)
}

func (g *fakeGateway) seenRequests() []seenRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]seenRequest(nil), g.requests...)
}

func (g *fakeGateway) seenBodies() [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([][]byte(nil), g.bodies...)
}

func (g *fakeGateway) set(f func(g *fakeGateway)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

func zaptestStdLog(t *testing.T) *log.Logger { return zap.NewStdLog(zaptest.NewLogger(t)) }
