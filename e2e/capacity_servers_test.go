package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// capacityTarget is a server the capacity benchmarks measure: a bare Go
// baseline or the gateway, with what its agents need.
type capacityTarget struct {
	tcp, udp   string       // agents' addresses
	handshakes func() int64 // completed agent handshakes so far
}

// bareTLSServer is the baseline of one mTLS connection: the policy the
// gateway applies to agents (TLS 1.3, client certificate verified
// against the tenant CA), one goroutine per connection that answers a
// ping and then waits in Read until the agent leaves.
func bareTLSServer(tb testing.TB, srv *certstest.Server, tenantCA *x509.Certificate, curves []tls.CurveID) *capacityTarget {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(tenantCA)
	conf := &tls.Config{
		Certificates: []tls.Certificate{srv.Cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		MinVersion: tls.VersionTLS13, NextProtos: []string{bareALPN}, CurvePreferences: curves,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveBare(tls.Server(c, conf), &n) })
		}
	})
	tb.Cleanup(func() { ln.Close(); waitGroupOrFail(tb, &wg, "bare TLS server") })
	return &capacityTarget{tcp: ln.Addr().String(), handshakes: n.Load}
}

func serveBare(c *tls.Conn, n *atomic.Int64) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return
	}
	n.Add(1)
	c.SetDeadline(time.Time{})
	answerPings(c)
}

// answerPings answers "ping\n" with "pong\n" until the peer leaves.
func answerPings(rw io.ReadWriter) {
	var buf [64]byte
	for {
		k, err := rw.Read(buf[:])
		if k > 0 && buf[k-1] == '\n' {
			if _, err := io.WriteString(rw, "pong\n"); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// bareQUICServer is the baseline of one QUIC connection: quic-go with the
// same TLS policy and idle timeout as the gateway's agents, a ping answered
// on the agent's stream, then one goroutine waiting for the next stream
// until the agent leaves.
func bareQUICServer(tb testing.TB, srv *certstest.Server, tenantCA *x509.Certificate) *capacityTarget {
	tb.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(tenantCA)
	conf := &tls.Config{
		Certificates: []tls.Certificate{srv.Cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		MinVersion: tls.VersionTLS13, NextProtos: []string{bareALPN},
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc}
	ln, err := tr.Listen(conf, &quic.Config{MaxIdleTimeout: 2 * time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			n.Add(1)
			wg.Go(func() {
				for {
					s, err := c.AcceptStream(ctx)
					if err != nil {
						return
					}
					answerPings(s)
					s.Close()
				}
			})
		}
	})
	tb.Cleanup(func() {
		cancel()
		ln.Close()
		tr.Close()
		pc.Close()
		waitGroupOrFail(tb, &wg, "bare QUIC server")
	})
	return &capacityTarget{udp: pc.LocalAddr().String(), handshakes: n.Load}
}

func waitGroupOrFail(tb testing.TB, wg *sync.WaitGroup, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		tb.Errorf("%s: connections still open after the agents left", what)
	}
}

// sekishoTarget is the whole path: a gateway with TCP and QUIC agent
// listeners, the tenant's connector, and a core serving /small.
func sekishoTarget(tb testing.TB, acme *tenantSpec, curves []string) (*capacityTarget, *world) {
	tb.Helper()
	agentsUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	w := startGateway(tb, func(c *gateway.Config) {
		c.QUIC.Conn = agentsUDP
		c.TLS.Curves = curves
		c.Logger = zap.NewNop() // the test observer would keep every log entry in memory
	}, acme)
	core := plainCore(tb, 0) // startCore keeps every request: memory per agent
	w.startConnector(tb, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core}}, nil)
	w.waitServed(tb, acme.name, 1)
	return &capacityTarget{
		tcp: w.addr, udp: agentsUDP.LocalAddr().String(),
		handshakes: func() int64 { return gatewayHandshakes(tb, w, "agent", "ok") },
	}, w
}

// gatewayHandshakes reads the gateway's handshake counter.
func gatewayHandshakes(tb testing.TB, w *world, kind, result string) int64 {
	mfs, err := w.gw.Registry().Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "sekisho_gateway_handshakes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int64(n)
}
