package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/tunnel"
)

// hang bounds every wait of these tests: they assert outcomes, not speed,
// and a hang must fail rather than stall the run.
const hang = 10 * time.Second

// kit is one tenant as a test sees it: its agent CA and its connector's
// identity.
type kit struct {
	name string
	ca   *certs.CA
	conn tls.Certificate
	pin  auth.Pin
}

func newKit(t testing.TB, name string) *kit {
	t.Helper()
	cert, pin := certstest.Connector(t)
	return &kit{name: name, ca: certstest.CA(t, name), conn: cert, pin: pin}
}

// tenantConfig is the gateway's config entry for k.
func (k *kit) tenantConfig() TenantConfig {
	return TenantConfig{Name: k.name, ConnectorPins: []auth.Pin{k.pin}}
}

// snapshot is a valid snapshot of k's tenant.
func (k *kit) snapshot(epoch string, version uint64, svcs ...tunnel.Service) *tunnel.Snapshot {
	if len(svcs) == 0 {
		svcs = []tunnel.Service{{Name: "core", PathPrefix: "/"}}
	}
	return &tunnel.Snapshot{
		Tenant: k.name, Epoch: epoch, Version: version,
		TrustBundle: [][]byte{k.ca.Cert.Raw}, Services: svcs,
	}
}

func (k *kit) hello() tunnel.Hello {
	return tunnel.Hello{
		MinVersion: tunnel.MinProtocolVersion, MaxVersion: tunnel.MaxProtocolVersion,
		Tenant: k.name, ConnectorID: "fake-" + k.name, Software: "gateway test",
	}
}

// testGateway is a running gateway on 127.0.0.1 and the logs it wrote.
type testGateway struct {
	srv  *certstest.Server
	s    *Server
	addr string
	logs *observer.ObservedLogs
}

// startGateway runs a gateway serving the kits' tenants until the test
// ends. mod may change the config before New.
func startGateway(t *testing.T, mod func(*Config), kits ...*kit) *testGateway {
	t.Helper()
	g := &testGateway{srv: certstest.NewServer(t)}
	core, logs := observer.New(zap.DebugLevel)
	g.logs = logs
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{ID: "gw-test", Listener: ln, Certificate: &g.srv.Cert, Logger: zap.New(core)}
	for _, k := range kits {
		cfg.Tenants = append(cfg.Tenants, k.tenantConfig())
	}
	if mod != nil {
		mod(&cfg)
	}
	g.s, err = New(cfg)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.s.Run(ctx) }()
	g.addr = g.s.Addr().String()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Run: %v", err)
			}
		case <-time.After(hang):
			t.Error("gateway did not stop")
		}
	})
	return g
}

// tenant returns the status of the named tenant.
func (g *testGateway) tenant(t testing.TB, name string) TenantStatus {
	t.Helper()
	for _, ts := range g.s.Tenants() {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("tenant %q not in Tenants()", name)
	return TenantStatus{}
}

// tunnelTLS is a connector's client configuration toward g.
func (g *testGateway) tunnelTLS(cert tls.Certificate) *tls.Config {
	conf := certs.ClientConfig(nil)
	conf.Certificates = []tls.Certificate{cert}
	conf.RootCAs = g.srv.Roots
	conf.ServerName = "localhost"
	return conf
}

// dialTunnel dials g as a connector presenting cert.
func (g *testGateway) dialTunnel(cert tls.Certificate) (tunnel.Session, error) {
	return tunnel.Dial(context.Background(), tunnel.DialConfig{
		Address: g.addr, TLS: g.tunnelTLS(cert), Timeout: hang,
	})
}

// fakeConnector is a connector written with the tunnel package alone.
type fakeConnector struct {
	sess    tunnel.Session
	ctrl    *tunnel.Control
	welcome *tunnel.Welcome
}

// connect dials g with cert and says hello. The session is closed when the
// test ends. The error is OpenControl's (or Dial's).
func (g *testGateway) connect(t *testing.T, cert tls.Certificate, hello tunnel.Hello) (*fakeConnector, error) {
	t.Helper()
	sess, err := g.dialTunnel(cert)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { sess.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	ctrl, w, err := tunnel.OpenControl(ctx, sess, hello, hang)
	if err != nil {
		sess.Close()
		return nil, err
	}
	return &fakeConnector{sess: sess, ctrl: ctrl, welcome: w}, nil
}

// mustConnect connects k's connector and pushes snap, which must be
// accepted.
func (g *testGateway) mustConnect(t *testing.T, k *kit, snap *tunnel.Snapshot) *fakeConnector {
	t.Helper()
	fc, err := g.connect(t, k.conn, k.hello())
	if err != nil {
		t.Fatalf("connect %s: %v", k.name, err)
	}
	if ack := fc.push(t, snap); !ack.Accepted {
		t.Fatalf("snapshot of %s refused: %s", k.name, ack.Error)
	}
	return fc
}

// push sends snap and returns the gateway's ack.
func (fc *fakeConnector) push(t testing.TB, snap *tunnel.Snapshot) *tunnel.SnapshotAck {
	t.Helper()
	if err := fc.ctrl.Send(tunnel.MsgSnapshot, snap); err != nil {
		t.Fatalf("send snapshot: %v", err)
	}
	typ, body, err := fc.ctrl.Receive(tunnel.MaxHelloLen, time.Now().Add(hang))
	if err != nil {
		t.Fatalf("read snapshot ack: %v", err)
	}
	if typ != tunnel.MsgSnapshotAck {
		t.Fatalf("got control message %d, want a snapshot ack", typ)
	}
	var ack tunnel.SnapshotAck
	if err := tunnel.Decode(typ, body, &ack); err != nil {
		t.Fatal(err)
	}
	if ack.Epoch != snap.Epoch || ack.Version != snap.Version {
		t.Errorf("ack names %s/%d, want %s/%d", ack.Epoch, ack.Version, snap.Epoch, snap.Version)
	}
	return &ack
}

// serve hands every stream the gateway opens to handle, each in its own
// goroutine, and closes the stream when handle returns. The loop and the
// handlers are stopped and waited for when the test ends.
func (fc *fakeConnector) serve(t testing.TB, handle func(tunnel.Stream)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			st, err := fc.sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				defer st.Close()
				handle(st)
			})
		}
	})
	t.Cleanup(func() {
		cancel()
		fc.sess.Close()
		wg.Wait()
	})
}

// streamLog records what the fake connector was asked for.
type streamLog struct {
	mu      sync.Mutex
	headers []tunnel.Header
	reqs    []*http.Request
	errs    []error
}

func (l *streamLog) add(h *tunnel.Header, r *http.Request, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h != nil {
		l.headers = append(l.headers, *h)
	}
	if r != nil {
		l.reqs = append(l.reqs, r)
	}
	if err != nil {
		l.errs = append(l.errs, err)
	}
}

func (l *streamLog) snapshot() ([]tunnel.Header, []*http.Request, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tunnel.Header(nil), l.headers...), append([]*http.Request(nil), l.reqs...), append([]error(nil), l.errs...)
}

// cannedHTTP answers each stream header with reply(h) and, when that is
// StatusOK, every HTTP/1.1 request on the stream with a 200 whose body
// names the device and service. keepAlive false answers
// "Connection: close", so that every request needs a new stream.
func cannedHTTP(log *streamLog, reply func(*tunnel.Header) *tunnel.Reply, keepAlive bool) func(tunnel.Stream) {
	return func(st tunnel.Stream) {
		h, err := tunnel.ReadRequest(st, hang)
		if err != nil {
			log.add(nil, nil, err)
			return
		}
		log.add(h, nil, nil)
		rep := reply(h)
		if err := tunnel.Answer(st, rep, hang); err != nil || rep.Status != tunnel.StatusOK {
			return
		}
		br := bufio.NewReader(st)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			req.Body.Close()
			log.add(nil, req, nil)
			body := fmt.Sprintf("hello %s via %s", req.Header.Get(HeaderDeviceID), h.Service)
			conn := ""
			if !keepAlive {
				conn = "Connection: close\r\n"
			}
			fmt.Fprintf(st, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s", len(body), conn, body)
			if !keepAlive {
				return
			}
		}
	}
}

func replyOK(*tunnel.Header) *tunnel.Reply { return &tunnel.Reply{Status: tunnel.StatusOK} }

// agentTLS is an agent's client configuration toward g; cert may be nil.
func (g *testGateway) agentTLS(cert *tls.Certificate) *tls.Config {
	conf := &tls.Config{
		RootCAs: g.srv.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		NextProtos: []string{"http/1.1"},
	}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return conf
}

// agent returns an HTTP/1.1 client presenting cert to g.
func (g *testGateway) agent(t testing.TB, cert *tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: g.agentTLS(cert), MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: hang}
}

func (g *testGateway) url(path string) string { return "https://" + g.addr + path }

// get sends a GET with the given Host (empty: the gateway's address) and
// returns status, Retry-After and body.
func get(t testing.TB, c *http.Client, url, host string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (host %q): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), string(b)
}

// rawAgent makes one HTTP/1.1 request on a fresh TLS connection with conf
// and reports the connection's local address (the gateway logs it as
// remote_addr), whether the handshake resumed a session, and the outcome.
func (g *testGateway) rawAgent(conf *tls.Config, path string) (local string, resumed bool, status int, err error) {
	raw, err := net.DialTimeout("tcp", g.addr, hang)
	if err != nil {
		return "", false, 0, err
	}
	defer raw.Close()
	local = raw.LocalAddr().String()
	raw.SetDeadline(time.Now().Add(hang))
	tc := tls.Client(raw, conf)
	if err := tc.Handshake(); err != nil {
		return local, false, 0, fmt.Errorf("handshake: %w", err)
	}
	resumed = tc.ConnectionState().DidResume
	if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path); err != nil {
		return local, resumed, 0, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return local, resumed, 0, fmt.Errorf("read response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return local, resumed, resp.StatusCode, nil
}

// refusal waits for the gateway's "peer refused" log of the connection
// from remote and returns its reason.
func (g *testGateway) refusal(t testing.TB, remote string) string {
	t.Helper()
	var reason string
	waitFor(t, "peer refused log of "+remote, func() bool {
		for _, e := range g.logs.FilterMessage("peer refused").All() {
			m := e.ContextMap()
			if m["remote_addr"] == remote {
				reason, _ = m["reason"].(string)
				return true
			}
		}
		return false
	})
	return reason
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
