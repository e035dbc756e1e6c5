package e2e

import (
	"testing"

	"github.com/sekisho/sekisho/certs/certstest"
)

// The capacity benchmarks' machinery works: a child process makes agents
// of every kind, each server completes their handshakes, and they are held.
func TestCapacityHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	acme := newTenant(t, "acme")
	srv := certstest.NewServer(t)
	barePKI := writeChildPKI(t, acme.ca, srv.CA.Cert)
	bareTCP := bareTLSServer(t, srv, acme.ca.Cert, nil)
	bareUDP := bareQUICServer(t, srv, acme.ca.Cert)
	gw, w := sekishoTarget(t, acme, nil)
	gwPKI := writeChildPKI(t, acme.ca, w.srv.CA.Cert)
	for _, tt := range []struct {
		mode   string
		target *capacityTarget
		pki    string
	}{
		{"tls", bareTCP, barePKI}, {"quic", bareUDP, barePKI},
		{"h1", gw, gwPKI}, {"h2", gw, gwPKI}, {"h3", gw, gwPKI},
	} {
		before := tt.target.handshakes()
		c := startChild(t, childSpec{Mode: tt.mode, Target: tt.target.addrFor(tt.mode), Tenant: "acme", Path: "/small", Dir: tt.pki})
		if got := c.do(t, "connect 3"); got != 3 {
			t.Errorf("%s: %d agents held, want 3", tt.mode, got)
		}
		if got := c.do(t, "connect 2"); got != 5 {
			t.Errorf("%s: %d agents held, want 5", tt.mode, got)
		}
		if tt.mode == "tls" || tt.mode == "h1" {
			if got := c.do(t, "handshake 4"); got != 4 {
				t.Errorf("%s: %d handshakes, want 4", tt.mode, got)
			}
		}
		c.stop(t)
		want := int64(5)
		if tt.mode == "tls" || tt.mode == "h1" {
			want = 9
		}
		if got := tt.target.handshakes() - before; got != want {
			t.Errorf("%s: the server completed %d handshakes, want %d", tt.mode, got, want)
		}
	}
}
