package tunnel_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/sekisho/sekisho/tunnel"
	"github.com/sekisho/sekisho/tunnel/tunneltest"
)

// quicServer accepts QUIC tunnels with conf until the test ends, keeping
// the sessions open, and returns its address.
func quicServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln := tunneltest.QUICListener(t, conf, tunnel.Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := ln.Accept(context.Background()); err != nil {
				return // ln.Close ends the sessions
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// rawQUICServer listens with quic-go itself and conf (another ALPN), and
// serves no stream.
func rawQUICServer(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// silentUDP is a UDP socket that reads nothing and answers nothing.
func silentUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}

func TestDialQUIC(t *testing.T) {
	srvConf, cliConf := tunneltest.TLSConfigs(t)
	t.Run("ok", func(t *testing.T) {
		addr := quicServer(t, srvConf)
		s, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: addr, TLS: cliConf})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if s.RemoteAddr().String() != addr || s.Transport() != tunnel.TransportQUIC {
			t.Errorf("session to %v over %s", s.RemoteAddr(), s.Transport())
		}
		// Its own socket is bound like a TCP connection's, not to a wildcard.
		if ip := s.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("local address %v", s.LocalAddr())
		}
		cs, ok := tunnel.ConnectionState(s)
		if !ok || cs.NegotiatedProtocol != tunnel.ALPN || cs.Version != tls.VersionTLS13 {
			t.Errorf("connection state %v: ALPN %q, version %x", ok, cs.NegotiatedProtocol, cs.Version)
		}
	})
	t.Run("shared transport", func(t *testing.T) {
		addr := quicServer(t, srvConf)
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: udp}
		defer udp.Close()
		defer tr.Close()
		dc := tunnel.DialConfig{Address: addr, TLS: cliConf, QUICTransport: tr}
		var sessions []tunnel.Session
		for range 3 {
			s, err := tunnel.DialQUIC(context.Background(), dc)
			if err != nil {
				t.Fatal(err)
			}
			sessions = append(sessions, s)
			if s.LocalAddr().String() != udp.LocalAddr().String() {
				t.Errorf("session from %v, want the shared socket %v", s.LocalAddr(), udp.LocalAddr())
			}
		}
		for _, s := range sessions {
			s.Close()
		}
		// The socket outlives its sessions.
		s, err := tunnel.DialQUIC(context.Background(), dc)
		if err != nil {
			t.Fatalf("dial after the other sessions closed: %v", err)
		}
		s.Close()
	})

	otherALPN := srvConf.Clone()
	otherALPN.NextProtos = []string{"h3"}
	untrusted, _ := tunneltest.TLSConfigs(t)
	failures := []struct {
		name string
		addr func(t *testing.T) string
		dc   func(dc *tunnel.DialConfig)
		want string
	}{
		{"server with other ALPN", func(t *testing.T) string { return rawQUICServer(t, otherALPN) }, nil, "no application protocol"},
		{"untrusted gateway", func(t *testing.T) string { return quicServer(t, untrusted) }, nil, "certificate signed by unknown authority"},
		{"no TLS config", nil, func(dc *tunnel.DialConfig) { dc.TLS = nil }, "no TLS configuration"},
		{"bad session config", nil, func(dc *tunnel.DialConfig) { dc.Session.QUICMaxStreams = -1 }, "quic_max_streams"},
		{"bad address", nil, func(dc *tunnel.DialConfig) { dc.Address = "127.0.0.1" }, "dial gateway"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			dc := tunnel.DialConfig{TLS: cliConf, Timeout: hang}
			if tt.addr != nil {
				dc.Address = tt.addr(t)
			}
			if tt.dc != nil {
				tt.dc(&dc)
			}
			s, err := tunnel.DialQUIC(context.Background(), dc)
			if err == nil {
				s.Close()
				t.Fatal("dialed")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}

	t.Run("handshake timeout", func(t *testing.T) {
		addr := silentUDP(t)
		const timeout = 200 * time.Millisecond
		_, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: addr, TLS: cliConf, Timeout: timeout})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("got %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		addr := silentUDP(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := tunnel.DialQUIC(ctx, tunnel.DialConfig{Address: addr, TLS: cliConf}); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

// pinnedConfigs returns a gateway configuration that requires a client
// certificate and accepts only the one of the returned connector
// configuration (as the gateway does with its pins, in VerifyConnection),
// a connector configuration with another certificate, and a count of the
// VerifyConnection calls.
func pinnedConfigs(t *testing.T) (gw, good, bad *tls.Config, verified *atomic.Int32) {
	srvConf, cliConf := tunneltest.TLSConfigs(t)
	goodID, _ := tunneltest.TLSConfigs(t)
	badID, _ := tunneltest.TLSConfigs(t)
	pin := goodID.Certificates[0].Certificate[0]
	verified = new(atomic.Int32)
	gw = srvConf.Clone()
	gw.ClientAuth = tls.RequireAnyClientCert
	gw.VerifyConnection = func(cs tls.ConnectionState) error {
		verified.Add(1)
		if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, pin) {
			return errors.New("connector key not pinned")
		}
		return nil
	}
	good, bad = cliConf.Clone(), cliConf.Clone()
	good.Certificates = goodID.Certificates
	bad.Certificates = badID.Certificates
	return gw, good, bad, verified
}

func TestListenQUIC(t *testing.T) {
	t.Run("VerifyConnection", func(t *testing.T) {
		gw, good, bad, verified := pinnedConfigs(t)
		ln := tunneltest.QUICListener(t, gw, tunnel.Config{})
		addr := ln.Addr().String()

		// An unpinned connector: the handshake fails (TLS 1.3 may let the
		// client finish first; then its session dies at once) and Accept
		// never sees it.
		if s, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: addr, TLS: bad}); err == nil {
			waitClosed(t, s.Done(), "refused connector's session")
			s.Close()
		} else {
			t.Logf("unpinned connector: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if s, err := ln.Accept(ctx); !errors.Is(err, context.DeadlineExceeded) {
			if s != nil {
				s.Close()
			}
			t.Fatalf("accept after a refused handshake: %v", err)
		}

		accepted := tunneltest.Async(func() (tunnel.Session, error) { return ln.Accept(context.Background()) })
		s, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: addr, TLS: good})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srv, err := tunneltest.Await(t, accepted, "accept")
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		cs, ok := tunnel.ConnectionState(srv)
		if !ok || len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, good.Certificates[0].Certificate[0]) {
			t.Errorf("accepted session's peer certificates: %v, %d", ok, len(cs.PeerCertificates))
		}
		if n := verified.Load(); n != 2 {
			t.Errorf("VerifyConnection ran %d times, want 2", n)
		}
	})
	t.Run("tunnel policy", func(t *testing.T) {
		// A GetConfigForClient that returns a configuration of another
		// ALPN and with session tickets still gets the tunnel's policy.
		srvConf, cliConf := tunneltest.TLSConfigs(t)
		gw := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := srvConf.Clone()
			c.NextProtos = []string{"h3"}
			return c, nil
		}}
		addr := quicServer(t, gw)
		conf := cliConf.Clone()
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i := range 2 {
			s, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: addr, TLS: conf})
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			cs, _ := tunnel.ConnectionState(s)
			if cs.DidResume {
				t.Errorf("dial %d resumed a TLS session", i)
			}
			s.Close()
		}
		// A client that offers another protocol is refused.
		h3 := cliConf.Clone()
		h3.NextProtos = []string{"h3"}
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		if c, err := quic.DialAddr(ctx, addr, h3, nil); err == nil {
			c.CloseWithError(0, "")
			t.Error("a client offering h3 only was accepted")
		}
	})
	t.Run("close ends sessions", func(t *testing.T) {
		srvConf, cliConf := tunneltest.TLSConfigs(t)
		ln := tunneltest.QUICListener(t, srvConf, tunnel.Config{})
		accepted := tunneltest.Async(func() (tunnel.Session, error) { return ln.Accept(context.Background()) })
		client, err := tunnel.DialQUIC(context.Background(), tunnel.DialConfig{Address: ln.Addr().String(), TLS: cliConf})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := tunneltest.Await(t, accepted, "accept")
		if err != nil {
			t.Fatal(err)
		}
		blocked := tunneltest.Async(func() (tunnel.Session, error) { return ln.Accept(context.Background()) })
		start := time.Now()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		if err := ln.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		if _, err := tunneltest.Await(t, blocked, "accept across Close"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept across Close: %v, want net.ErrClosed", err)
		}
		waitClosed(t, server.Done(), "accepted session")
		waitClosed(t, client.Done(), "peer of an accepted session")
		if d := time.Since(start); d > time.Second {
			t.Errorf("the connector learned after %v: not told, timed out", d)
		}
	})
	t.Run("no TLS config", func(t *testing.T) {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer udp.Close()
		if _, err := tunnel.ListenQUIC(udp, nil, tunnel.Config{}); err == nil {
			t.Error("listening without TLS")
		}
		if _, err := tunnel.ListenQUIC(udp, &tls.Config{}, tunnel.Config{QUICConnectionWindow: 1}); err == nil {
			t.Error("listening with a bad config")
		}
	})
}
