package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// BenchmarkLongFatPath moves one large download over an emulated WAN link
// of 500 Mbit/s and 50 ms round trip (linkemu_test.go), placed between the
// gateway and the connector (the DMZ link), for each tunnel transport, next
// to the direct baseline through the same emulator (agent to core over TLS
// through the TCP relay, over HTTP/3 through the UDP relay). It reports
// the share of the link's capacity each reached, and the share of what a
// download can reach at most (it also waits a round trip for its
// request). One warm-up download per arm is not timed. Run:
//
//	go test ./e2e -run '^$' -bench LongFatPath -benchtime 3x
func BenchmarkLongFatPath(b *testing.B) {
	const size = 64 << 20
	shape := wanShape(500, 50*time.Millisecond)
	acme := newTenant(b, "acme")
	core := plainCore(b, size)
	srv := certstest.NewServer(b)
	for _, arm := range []struct{ name, transport string }{
		{"direct-tls", ""}, {"direct-h3", ""}, {"sekisho-tcp", "tcp"}, {"sekisho-quic", "quic"},
	} {
		b.Run(arm.name, func(b *testing.B) {
			var url string
			var client *http.Client
			var drops func() int64
			switch arm.name {
			case "direct-tls":
				ln := directTLS(b, srv, acme, size)
				url = "https://" + startTCPRelay(b, ln, shape).addr() + "/big"
				client = agentClient(b, acme, srv.Roots, false)
			case "direct-h3":
				ur := startUDPRelay(b, directH3(b, srv, acme, size), shape)
				url, drops = "https://"+ur.addr()+"/big", ur.dropped
				client = agentClient(b, acme, srv.Roots, true)
			default:
				w, ur := sekishoOverLink(b, acme, core, arm.transport, shape)
				url, drops = w.url("/big"), ur.dropped
				client = agentClient(b, acme, w.srv.Roots, false)
			}
			buf := make([]byte, 256<<10)
			one := func() {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf)
				resp.Body.Close()
				if err != nil || n != size {
					b.Fatalf("%d bytes, %v", n, err)
				}
			}
			one() // warm-up: connections, windows, congestion control
			var before int64
			if drops != nil {
				before = drops()
			}
			b.SetBytes(size)
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				one()
			}
			elapsed := time.Since(start)
			b.ReportMetric(100*float64(size)*float64(b.N)/elapsed.Seconds()/shape.rate, "%link")
			// A download also waits one round trip for its request: the
			// most it can reach is size / (size/rate + rtt).
			ceiling := float64(size) / (float64(size)/shape.rate + 2*shape.delay.Seconds())
			b.ReportMetric(100*float64(size)*float64(b.N)/elapsed.Seconds()/ceiling, "%ceiling")
			if drops != nil {
				b.ReportMetric(float64(drops()-before)/float64(b.N), "drops/op")
			}
		})
	}
}

// agentTLS is an agent's TLS config: its own certificate, no resumption.
func agentTLS(b *testing.B, acme *tenantSpec, roots *x509.CertPool, protos ...string) *tls.Config {
	cert := certstest.Agent(b, acme.ca, "pc-wan-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	return &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
		NextProtos: protos, MinVersion: tls.VersionTLS13}
}

func agentClient(b *testing.B, acme *tenantSpec, roots *x509.CertPool, h3 bool) *http.Client {
	if h3 {
		tr := &http3.Transport{TLSClientConfig: agentTLS(b, acme, roots, http3.NextProtoH3)}
		b.Cleanup(func() { tr.Close() })
		return &http.Client{Transport: tr}
	}
	tr := &http.Transport{TLSClientConfig: agentTLS(b, acme, roots, "http/1.1")}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// mTLSServerConfig is the agents' policy of the direct baselines.
func mTLSServerConfig(srv *certstest.Server, acme *tenantSpec, protos ...string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(acme.ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{srv.Cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: tls.VersionTLS13, NextProtos: protos}
}

// directTLS serves the core straight over mTLS and returns its address.
func directTLS(b *testing.B, srv *certstest.Server, acme *tenantSpec, size int64) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: benchCore(size), TLSConfig: mTLSServerConfig(srv, acme, "http/1.1")}
	go hs.ServeTLS(ln, "", "")
	b.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// directH3 serves the core straight over HTTP/3 and returns its address.
func directH3(b *testing.B, srv *certstest.Server, acme *tenantSpec, size int64) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http3.Server{Handler: benchCore(size), TLSConfig: mTLSServerConfig(srv, acme, http3.NextProtoH3)}
	done := make(chan struct{})
	go func() { hs.Serve(pc); close(done) }()
	b.Cleanup(func() { hs.Close(); pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// sekishoOverLink runs a gateway and a connector whose tunnel (over
// transport) crosses the emulated link; agents reach the gateway over
// loopback. It returns the world and the UDP relay (for its drops).
func sekishoOverLink(b *testing.B, acme *tenantSpec, core, transport string, shape linkShape) (*world, *udpRelay) {
	tunnels, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	w := startGateway(b, func(c *gateway.Config) {
		c.QUIC.TunnelConn = tunnels
		c.Logger = zap.NewNop()
	}, acme)
	tr := startTCPRelay(b, w.addr, shape)
	ur := startUDPRelay(b, tunnels.LocalAddr().String(), shape)
	w.startConnector(b, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core}},
		func(c *connector.Config) {
			c.Transport = transport
			c.Gateways[0].Address = tr.addr()
			c.Gateways[0].QUICAddress = ur.addr()
		})
	w.waitServed(b, acme.name, 1)
	return w, ur
}
