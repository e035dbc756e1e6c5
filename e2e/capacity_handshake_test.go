package e2e

import (
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs/certstest"
)

// BenchmarkHandshakeCPU measures the server's CPU time per full mTLS
// handshake (new connection, TLS 1.3, client certificate verified, no
// resumption, closed at once): a bare Go server and the gateway, in the
// same run, alternating, for Go's default key exchange (the hybrid
// X25519MLKEM768) and for X25519 alone. The agents run in a child process
// that shares the two cores, so this process's CPU time per handshake is
// compared, not the wall rate (reported too, for the record). Run it once:
//
//	go test ./e2e -run '^$' -bench HandshakeCPU -benchtime 1x
func BenchmarkHandshakeCPU(b *testing.B) {
	const rounds, per = 3, 1000
	for _, kx := range []struct {
		name  string
		ids   []tls.CurveID
		names []string
	}{{"hybrid", nil, nil}, {"x25519", []tls.CurveID{tls.X25519}, []string{"X25519"}}} {
		b.Run(kx.name, func(b *testing.B) {
			acme := newTenant(b, "acme")
			srv := certstest.NewServer(b)
			bare := bareTLSServer(b, srv, acme.ca.Cert, kx.ids)
			gw, w := sekishoTarget(b, acme, kx.names)
			bc := startChild(b, childSpec{Mode: "tls", Target: bare.tcp, Tenant: "acme", Dir: writeChildPKI(b, acme.ca, srv.CA.Cert)})
			gc := startChild(b, childSpec{Mode: "h1", Target: gw.tcp, Tenant: "acme", Dir: writeChildPKI(b, acme.ca, w.srv.CA.Cert)})
			var bareRun, gwRun handshakeRun
			for range rounds {
				bareRun.add(handshakes(b, bc, bare, per))
				gwRun.add(handshakes(b, gc, gw, per))
			}
			b.ReportMetric(bareRun.cpuPer(), "bare-cpu-us/hs")
			b.ReportMetric(gwRun.cpuPer(), "sekisho-cpu-us/hs")
			b.ReportMetric(gwRun.cpuPer()/bareRun.cpuPer(), "ratio")
			b.ReportMetric(bareRun.rate(), "bare-hs/s")
			b.ReportMetric(gwRun.rate(), "sekisho-hs/s")
		})
	}
}

// handshakeRun adds up handshakes, the server's CPU time and wall time.
type handshakeRun struct {
	n         int
	cpu, wall time.Duration
}

func (r *handshakeRun) add(o handshakeRun) {
	r.n += o.n
	r.cpu += o.cpu
	r.wall += o.wall
}

func (r handshakeRun) cpuPer() float64 { return float64(r.cpu.Microseconds()) / float64(r.n) }
func (r handshakeRun) rate() float64   { return float64(r.n) / r.wall.Seconds() }

// handshakes has the child make n handshakes with target and checks that
// the server completed each one.
func handshakes(b *testing.B, c *child, target *capacityTarget, n int) handshakeRun {
	b.Helper()
	before := target.handshakes()
	cpu, wall := startCPU(), time.Now()
	got := c.do(b, fmt.Sprintf("handshake %d", n))
	r := handshakeRun{n: n, cpu: cpu.elapsed(), wall: time.Since(wall)}
	if done := target.handshakes() - before; got != n || done != int64(n) {
		b.Fatalf("%d handshakes made, %d completed by the server; want %d", got, done, n)
	}
	return r
}
