package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/tunnel"
)

func TestConnectorHelloRefused(t *testing.T) {
	acme, beta := newKit(t, "acme"), newKit(t, "beta")
	g := startGateway(t, nil, acme, beta)
	hello := func(mod func(*tunnel.Hello)) tunnel.Hello {
		h := acme.hello()
		mod(&h)
		return h
	}
	tests := []struct {
		name   string
		hello  tunnel.Hello
		reason string
	}{
		{"another tenant's name", hello(func(h *tunnel.Hello) { h.Tenant = "beta" }), "not_permitted"},
		{"unknown tenant", hello(func(h *tunnel.Hello) { h.Tenant = "ghost" }), "not_permitted"},
		{"no tenant", hello(func(h *tunnel.Hello) { h.Tenant = "" }), "not_permitted"},
		{"versions above ours", hello(func(h *tunnel.Hello) {
			h.MinVersion, h.MaxVersion = tunnel.MaxProtocolVersion+1, tunnel.MaxProtocolVersion+5
		}), "version"},
		{"versions below ours", hello(func(h *tunnel.Hello) { h.MinVersion, h.MaxVersion = 0, 0 }), "version"},
		{"inverted range", hello(func(h *tunnel.Hello) {
			h.MinVersion, h.MaxVersion = tunnel.MaxProtocolVersion, tunnel.MinProtocolVersion-1
		}), "version"},
		{"bad version wins over bad tenant", hello(func(h *tunnel.Hello) {
			h.Tenant, h.MinVersion, h.MaxVersion = "beta", 99, 99
		}), "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refuse, err := g.refusedHello(t, acme.conn, tt.hello)
			if err != nil {
				t.Fatal(err)
			}
			if refuse.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", refuse.Reason, tt.reason)
			}
		})
	}
	for _, ts := range g.s.Tenants() {
		if ts.Served || ts.Sessions != 0 {
			t.Errorf("after refusals only, tenant %s: served=%v sessions=%d", ts.Name, ts.Served, ts.Sessions)
		}
	}
}

func TestConnectorUnknownPinFailsHandshake(t *testing.T) {
	acme := newKit(t, "acme")
	g := startGateway(t, nil, acme)
	stranger, _ := certstest.Connector(t)

	t.Run("tls", func(t *testing.T) {
		for _, c := range []struct {
			name string
			cert *tls.Certificate
		}{{"unknown pin", &stranger}, {"no certificate", nil}} {
			t.Run(c.name, func(t *testing.T) {
				conf := g.tunnelTLS(stranger)
				if c.cert == nil {
					conf.Certificates = nil
				}
				conf.NextProtos = []string{tunnel.ALPN}
				raw, err := net.DialTimeout("tcp", g.addr, hang)
				if err != nil {
					t.Fatal(err)
				}
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(hang))
				tc := tls.Client(raw, conf)
				// TLS 1.3: the client's side of the handshake completes
				// before the server has checked its certificate; the
				// refusal arrives as an alert on the first read.
				err = tc.Handshake()
				if err == nil {
					_, err = tc.Read(make([]byte, 1))
				}
				if err == nil {
					t.Fatal("gateway accepted the connection")
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("gateway did not refuse, read timed out: %v", err)
				}
				if r := g.refusal(t, raw.LocalAddr().String()); r == "" {
					t.Error("refusal logged without a reason")
				}
			})
		}
	})

	t.Run("tunnel", func(t *testing.T) {
		fc, err := g.connect(t, stranger, acme.hello())
		if err == nil {
			t.Fatalf("unknown connector welcomed: %+v", fc.welcome)
		}
		var re *tunnel.RefusedError
		if errors.As(err, &re) {
			t.Errorf("unknown pin refused at the hello (%v); want the TLS handshake to fail", err)
		}
	})
	if ts := g.tenant(t, "acme"); ts.Sessions != 0 || ts.Served {
		t.Errorf("tenant after unknown connectors: %+v", ts)
	}
}

func TestConnectorSnapshot(t *testing.T) {
	acme, beta := newKit(t, "acme"), newKit(t, "beta")
	g := startGateway(t, nil, acme, beta)

	t.Run("valid hello and snapshot", func(t *testing.T) {
		fc, err := g.connect(t, acme.conn, acme.hello())
		if err != nil {
			t.Fatal(err)
		}
		if fc.welcome.Version != tunnel.MaxProtocolVersion || fc.welcome.GatewayID != "gw-test" {
			t.Errorf("welcome = %+v", fc.welcome)
		}
		if ts := g.tenant(t, "acme"); ts.Served || ts.Sessions != 0 {
			t.Errorf("before its snapshot, tenant = %+v; want unserved, no session", ts)
		}
		snap := acme.snapshot("e1", 3,
			tunnel.Service{Name: "api", PathPrefix: "/api"}, tunnel.Service{Name: "web", Host: "web.example"})
		ack := fc.push(t, snap)
		if !ack.Accepted || ack.Error != "" {
			t.Fatalf("ack = %+v, want accepted", ack)
		}
		ts := g.tenant(t, "acme")
		want := TenantStatus{Name: "acme", Served: true, SnapshotEpoch: "e1", SnapshotVersion: 3, Services: 2,
			Sessions: 1, Connectors: []admin.Connector{{ID: "fake-acme", Transport: "tcp", Sessions: 1}}}
		if ts.SnapshotAt.IsZero() {
			t.Error("SnapshotAt not set")
		}
		ts.SnapshotAt = time.Time{}
		if !equalStatus(ts, want) {
			t.Errorf("Tenants() acme = %+v, want %+v", ts, want)
		}

		// A second session of the tenant pushing the same snapshot is
		// not newer: the ack still accepts it and the session serves.
		fc2, err := g.connect(t, acme.conn, acme.hello())
		if err != nil {
			t.Fatal(err)
		}
		if ack := fc2.push(t, snap); !ack.Accepted {
			t.Fatalf("same snapshot on a second session: %+v", ack)
		}
		if ts := g.tenant(t, "acme"); ts.Sessions != 2 || ts.SnapshotVersion != 3 {
			t.Errorf("after second session: %+v", ts)
		}
		// An older one is acknowledged but leaves the newer in force.
		if ack := fc2.push(t, acme.snapshot("e1", 2)); !ack.Accepted {
			t.Errorf("older snapshot ack = %+v", ack)
		}
		if ts := g.tenant(t, "acme"); ts.SnapshotVersion != 3 || ts.Services != 2 {
			t.Errorf("an older snapshot replaced the state: %+v", ts)
		}
		fc2.sess.Close()
		waitFor(t, "second session gone", func() bool { return g.tenant(t, "acme").Sessions == 1 })
	})

	t.Run("invalid snapshot", func(t *testing.T) {
		fc, err := g.connect(t, beta.conn, beta.hello())
		if err != nil {
			t.Fatal(err)
		}
		bad := beta.snapshot("e1", 1)
		bad.TrustBundle = [][]byte{[]byte("definitely not a certificate")}
		ack := fc.push(t, bad)
		if ack.Accepted || ack.Error == "" {
			t.Fatalf("ack = %+v, want refused with an error", ack)
		}
		if ts := g.tenant(t, "beta"); ts.Served || ts.Sessions != 0 {
			t.Errorf("after a refused snapshot, tenant = %+v; want unserved, no session", ts)
		}
		// The session stays up: a valid snapshot on it is then taken.
		if ack := fc.push(t, beta.snapshot("e1", 2)); !ack.Accepted {
			t.Fatalf("valid snapshot after a refused one: %+v", ack)
		}
		if ts := g.tenant(t, "beta"); !ts.Served || ts.Sessions != 1 || ts.SnapshotVersion != 2 {
			t.Errorf("tenant = %+v; want served by one session at version 2", ts)
		}
	})

	t.Run("snapshot for another tenant", func(t *testing.T) {
		fc, err := g.connect(t, beta.conn, beta.hello())
		if err != nil {
			t.Fatal(err)
		}
		ack := fc.push(t, acme.snapshot("e1", 99))
		if ack.Accepted {
			t.Fatalf("beta's connector replaced acme's snapshot: %+v", ack)
		}
		if ts := g.tenant(t, "acme"); ts.SnapshotVersion != 3 {
			t.Errorf("acme's state changed: %+v", ts)
		}
	})
}

// equalStatus compares what these tests set; connector times are not.
func equalStatus(a, b TenantStatus) bool {
	ids := func(cs []admin.Connector) []string {
		var out []string
		for _, c := range cs {
			out = append(out, fmt.Sprintf("%s/%s/%d", c.ID, c.Transport, c.Sessions))
		}
		return out
	}
	return a.Name == b.Name && a.Served == b.Served && a.SnapshotEpoch == b.SnapshotEpoch &&
		a.SnapshotVersion == b.SnapshotVersion && a.SnapshotAt.Equal(b.SnapshotAt) &&
		a.Services == b.Services && a.Sessions == b.Sessions && slices.Equal(ids(a.Connectors), ids(b.Connectors))
}

// refusedHello sends hello on a fresh session and returns the gateway's
// refusal. It does what tunnel.OpenControl does, except that a send error
// does not hide a refusal that already arrived (see
// TestOpenControlReportsRefusal).
func (g *testGateway) refusedHello(t *testing.T, cert tls.Certificate, hello tunnel.Hello) (*tunnel.Refuse, error) {
	sess, err := g.dialTunnel(cert)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	st, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	ctrl := tunnel.NewControl(st, hang)
	sendErr := ctrl.Send(tunnel.MsgHello, &hello)
	typ, body, err := ctrl.Receive(tunnel.MaxHelloLen, time.Now().Add(hang))
	if err != nil {
		return nil, fmt.Errorf("no answer to hello (send: %v): %w", sendErr, err)
	}
	if typ != tunnel.MsgRefuse {
		return nil, fmt.Errorf("gateway answered hello with message %d, want a refusal", typ)
	}
	var r tunnel.Refuse
	if err := tunnel.Decode(typ, body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// TestOpenControlReportsRefusal: a connector that the gateway refuses
// must learn why, through tunnel.OpenControl, every time.
func TestOpenControlReportsRefusal(t *testing.T) {
	acme, beta := newKit(t, "acme"), newKit(t, "beta")
	g := startGateway(t, nil, acme, beta)
	h := acme.hello()
	h.Tenant = "beta"
	for i := range 50 {
		_, err := g.connect(t, acme.conn, h)
		var re *tunnel.RefusedError
		if !errors.As(err, &re) || re.Refuse.Reason != "not_permitted" {
			t.Fatalf("attempt %d: OpenControl = %v, want a *tunnel.RefusedError not_permitted", i, err)
		}
	}
}
