package connector_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/tunnel"
)

// countingDialer counts the connector's dials to addr.
func countingDialer(addr string, n *atomic.Int32) func(ctx context.Context, network, a string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == addr {
			n.Add(1)
		}
		return d.DialContext(ctx, network, a)
	}
}

func TestRefusedConnectorKeepsRedialing(t *testing.T) {
	g := startFakeGateway(t)
	g.refuse.Store(&tunnel.Refuse{Reason: "not_permitted"})
	id := newIdentity(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: closedAddr(t)})
	var dials atomic.Int32
	cfg.Dialer = countingDialer(g.addr, &dials)
	c := startConnector(t, cfg)

	waitFor(t, "five dials", func() bool {
		if n := c.Sessions(); n != 0 {
			t.Fatalf("Sessions() = %d while every hello is refused", n)
		}
		return dials.Load() >= 5
	})
	if h := g.hellos.Load(); h < 4 {
		t.Errorf("gateway read %d hellos in %d dials", h, dials.Load())
	}
	select {
	case gs := <-g.sessions:
		t.Fatalf("a refused connector got a session: %+v", gs.hello)
	default:
	}

	// Once the gateway lets it in, the connector comes up by itself.
	g.refuse.Store(nil)
	gs := g.next(t)
	waitFor(t, "session up after refusals", func() bool { return c.Sessions() == 1 })
	if gs.hello.Tenant != "acme" {
		t.Errorf("hello = %+v", gs.hello)
	}
}

func TestUnreachableGatewayRedialed(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: closedAddr(t)})
	dead := closedAddr(t)
	cfg.Gateways[0].Address = dead
	var dials atomic.Int32
	cfg.Dialer = countingDialer(dead, &dials)
	c := startConnector(t, cfg)
	waitFor(t, "redials of a dead gateway", func() bool { return dials.Load() >= 4 })
	if n := c.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d", n)
	}
}

func TestReconnect(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	core := startCore(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()})
	cfg.SessionsPerGateway = 2
	var dials atomic.Int32
	cfg.Dialer = countingDialer(g.addr, &dials)
	c := startConnector(t, cfg)

	first, second := g.next(t), g.next(t)
	waitFor(t, "two sessions", func() bool { return c.Sessions() == 2 })
	for _, gs := range []*gwSession{first, second} {
		mustRelayHTTP(t, gs.sess, "core", "/both")
	}
	if first.snap.Version != second.snap.Version || first.snap.Epoch != second.snap.Epoch {
		t.Errorf("sessions pushed %s/%d and %s/%d, want one snapshot",
			first.snap.Epoch, first.snap.Version, second.snap.Epoch, second.snap.Version)
	}

	// The gateway drops one session abruptly: the connector redials that
	// slot and keeps the other.
	first.sess.Close()
	third := g.next(t)
	waitFor(t, "two sessions again", func() bool { return c.Sessions() == 2 })
	mustRelayHTTP(t, third.sess, "core", "/third")
	mustRelayHTTP(t, second.sess, "core", "/second")
	if third.snap.Version != first.snap.Version {
		t.Errorf("redialed session pushed version %d, want %d", third.snap.Version, first.snap.Version)
	}

	// Both at once.
	second.sess.Close()
	third.sess.Close()
	fourth, fifth := g.next(t), g.next(t)
	waitFor(t, "two sessions after losing both", func() bool { return c.Sessions() == 2 })
	mustRelayHTTP(t, fourth.sess, "core", "/4")
	mustRelayHTTP(t, fifth.sess, "core", "/5")
	if n := dials.Load(); n != 5 {
		t.Errorf("%d dials for 5 sessions", n)
	}
}

func TestReconnectAfterGatewayRestart(t *testing.T) {
	// The listener goes away and comes back on the same port: the
	// connector keeps trying and comes back up.
	g := startFakeGateway(t)
	id := newIdentity(t)
	core := startCore(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: core.Listener.Addr().String()})
	c := startConnector(t, cfg)
	gs := g.next(t)
	waitFor(t, "session up", func() bool { return c.Sessions() == 1 })

	// Refuse while "down", then drop the live session.
	g.refuse.Store(&tunnel.Refuse{Reason: "shutting_down"})
	gs.sess.Close()
	waitFor(t, "session counted down", func() bool { return c.Sessions() == 0 })
	before := g.hellos.Load()
	waitFor(t, "redials while refused", func() bool { return g.hellos.Load() >= before+2 })
	g.refuse.Store(nil)
	back := g.next(t)
	waitFor(t, "session back", func() bool { return c.Sessions() == 1 })
	mustRelayHTTP(t, back.sess, "core", "/back")
}

func TestCloseStopsConnector(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{Name: "core", PathPrefix: "/", Address: closedAddr(t)})
	c, err := connector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	gs := g.next(t)
	waitFor(t, "session up", func() bool { return c.Sessions() == 1 })
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close: %v", err)
		}
	case <-time.After(hang):
		t.Fatal("Run did not return after Close")
	}
	if n := c.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d after Close", n)
	}
	select {
	case <-gs.sess.Done():
	case <-time.After(hang):
		t.Error("session still up at the gateway after Close")
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
}
