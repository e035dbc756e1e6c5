package connector_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/tunnel"
)

// hang bounds every wait of these tests: they assert outcomes, not speed,
// and a hang must fail rather than stall the run.
const hang = 10 * time.Second

// fakeGateway is the gateway end of the tunnel protocol, written with the
// tunnel package alone: it accepts connectors, welcomes (or refuses) their
// hello, reads and acknowledges their snapshot, and hands each session to
// the test.
type fakeGateway struct {
	srv  *certstest.Server
	ln   net.Listener
	addr string
	// refuse, when set, is the answer to every hello.
	refuse atomic.Pointer[tunnel.Refuse]
	hellos atomic.Int32 // hellos read

	sessions chan *gwSession // welcomed sessions, snapshot acknowledged
	failures chan error      // protocol errors of welcomed connectors

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	open   []tunnel.Session
}

// gwSession is one connector session as the fake gateway saw it.
type gwSession struct {
	sess    tunnel.Session
	pin     auth.Pin
	hello   *tunnel.Hello
	snap    *tunnel.Snapshot
	rawSnap []byte
}

func startFakeGateway(t *testing.T) *fakeGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &fakeGateway{
		srv: certstest.NewServer(t), ln: ln, addr: ln.Addr().String(),
		sessions: make(chan *gwSession, 256), failures: make(chan error, 256),
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	conf := &tls.Config{
		Certificates: []tls.Certificate{g.srv.Cert},
		NextProtos:   []string{tunnel.ALPN},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
	g.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.wg.Go(func() { g.handle(tls.Server(c, conf)) })
		}
	})
	t.Cleanup(func() {
		g.cancel()
		ln.Close()
		g.mu.Lock()
		for _, s := range g.open {
			s.Close()
		}
		g.mu.Unlock()
		g.wg.Wait()
	})
	return g
}

func (g *fakeGateway) handle(tc *tls.Conn) {
	tc.SetDeadline(time.Now().Add(hang))
	if err := tc.HandshakeContext(g.ctx); err != nil {
		tc.Close()
		return
	}
	tc.SetDeadline(time.Time{})
	sess, err := tunnel.NewYamuxServer(tc, tunnel.Config{})
	if err != nil {
		tc.Close()
		return
	}
	if !g.track(sess) {
		return
	}
	ctrl, hello, err := tunnel.AcceptControl(g.ctx, sess, hang)
	if err != nil {
		sess.Close()
		return
	}
	g.hellos.Add(1)
	if r := g.refuse.Load(); r != nil {
		ctrl.Send(tunnel.MsgRefuse, r)
		sess.Close()
		return
	}
	gs := &gwSession{sess: sess, hello: hello, pin: auth.PinOfCert(tc.ConnectionState().PeerCertificates[0])}
	if err := g.welcome(ctrl, gs); err != nil {
		sess.Close()
		select {
		case g.failures <- err:
		default:
		}
		return
	}
	g.sessions <- gs
}

// welcome accepts the session and reads and acknowledges its snapshot.
func (g *fakeGateway) welcome(ctrl *tunnel.Control, gs *gwSession) error {
	if err := ctrl.Send(tunnel.MsgWelcome, &tunnel.Welcome{Version: tunnel.MaxProtocolVersion, GatewayID: "fake-gw"}); err != nil {
		return err
	}
	typ, body, err := ctrl.Receive(tunnel.MaxSnapshotLen, time.Now().Add(hang))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if typ != tunnel.MsgSnapshot {
		return fmt.Errorf("first message after welcome is %d, want a snapshot", typ)
	}
	gs.snap, gs.rawSnap = new(tunnel.Snapshot), body
	if err := tunnel.Decode(typ, body, gs.snap); err != nil {
		return err
	}
	return ctrl.Send(tunnel.MsgSnapshotAck, &tunnel.SnapshotAck{Epoch: gs.snap.Epoch, Version: gs.snap.Version, Accepted: true})
}

// track records s so that the cleanup closes it; false when the gateway
// is already closing.
func (g *fakeGateway) track(s tunnel.Session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		s.Close()
		return false
	}
	g.open = append(g.open, s)
	return true
}

// next returns the next welcomed session.
func (g *fakeGateway) next(t *testing.T) *gwSession {
	t.Helper()
	select {
	case gs := <-g.sessions:
		return gs
	case err := <-g.failures:
		t.Fatalf("connector session failed at the fake gateway: %v", err)
	case <-time.After(hang):
		t.Fatalf("no connector session after %v", hang)
	}
	return nil
}

// identity is a tenant's CA and connector key.
type identity struct {
	ca   *certs.CA
	cert tls.Certificate
	pin  auth.Pin
}

func newIdentity(t *testing.T) *identity {
	cert, pin := certstest.Connector(t)
	return &identity{ca: certstest.CA(t, "acme"), cert: cert, pin: pin}
}

// testConfig is a valid connector config of tenant acme toward g, with
// one session, a 300ms stream header timeout and fast backoff.
func (g *fakeGateway) testConfig(id *identity, logger *zap.Logger, svcs ...connector.ServiceConfig) connector.Config {
	return connector.Config{
		ID:                 "conn-test",
		Tenant:             "acme",
		Certificate:        &id.cert,
		Gateways:           []connector.GatewayConfig{{Address: g.addr, ServerName: "localhost", RootCAs: g.srv.Roots}},
		SessionsPerGateway: 1,
		TrustBundle:        []*x509.Certificate{id.ca.Cert},
		Services:           svcs,
		Timeouts:           connector.Timeouts{StreamHeader: 300 * time.Millisecond, Dial: hang},
		Backoff:            connector.BackoffConfig{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		Logger:             logger,
	}
}

// observed returns a logger and what it logged.
func observed() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// startConnector runs a connector until the test ends.
func startConnector(t *testing.T, cfg connector.Config) *connector.Connector {
	t.Helper()
	c, err := connector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("connector Run: %v", err)
			}
		case <-time.After(hang):
			t.Error("connector did not stop")
		}
	})
	return c
}

// startCore runs a plain HTTP service that answers "core: METHOD PATH".
func startCore(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(coreHandler())
	t.Cleanup(srv.Close)
	return srv
}

func coreHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "core: %s %s", r.Method, r.URL.Path)
	})
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// relay opens a stream for service of kind on s, as a gateway does.
func relay(s tunnel.Session, kind tunnel.Kind, service string) (tunnel.Stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	return tunnel.OpenRelay(ctx, s, &tunnel.Header{Kind: kind, Service: service}, hang)
}

// exchange makes one HTTP/1.1 request on st and returns status and body.
func exchange(st tunnel.Stream, path string) (int, string, error) {
	st.SetDeadline(time.Now().Add(hang))
	if _, err := fmt.Fprintf(st, "GET %s HTTP/1.1\r\nHost: core\r\n\r\n", path); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(st), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// mustRelayHTTP checks that a valid http stream for service on s reaches
// the core.
func mustRelayHTTP(t *testing.T, s tunnel.Session, service, path string) {
	t.Helper()
	st, err := relay(s, tunnel.KindHTTP, service)
	if err != nil {
		t.Fatalf("relay to %s: %v", service, err)
	}
	defer st.Close()
	status, body, err := exchange(st, path)
	if err != nil || status != 200 || body != "core: GET "+path {
		t.Fatalf("exchange with %s: %d %q %v", service, status, body, err)
	}
}

// refusal returns the connector's non-OK reply to a stream.
func refusal(t *testing.T, err error) tunnel.Reply {
	t.Helper()
	var se *tunnel.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("stream error = %v, want a *tunnel.StatusError", err)
	}
	return se.Reply
}

// waitFor polls cond until it holds, failing the test after hang.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", hang, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
