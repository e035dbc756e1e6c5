package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/internal/admin"
)

// hangGuard bounds every wait of these tests: they assert outcomes, not
// speed, and a hang must fail rather than stall CI.
const hangGuard = 10 * time.Second

// world is a gateway, its server certificate and the logs it wrote.
type world struct {
	t      testing.TB
	srv    *certstest.Server
	gw     *gateway.Server
	addr   string
	logs   *observer.ObservedLogs
	cancel context.CancelFunc
	done   chan error
}

// tenantSpec is a tenant with its CA and connector identity.
type tenantSpec struct {
	name    string
	ca      *certs.CA
	connKey tls.Certificate
	pin     auth.Pin
}

func newTenant(t testing.TB, name string) *tenantSpec {
	cert, pin := certstest.Connector(t)
	return &tenantSpec{name: name, ca: certstest.CA(t, name), connKey: cert, pin: pin}
}

// startGateway runs a gateway on 127.0.0.1 for the tenants.
func startGateway(t testing.TB, mod func(*gateway.Config), tenants ...*tenantSpec) *world {
	t.Helper()
	w := &world{t: t, srv: certstest.NewServer(t), done: make(chan error, 1)}
	core, logs := observer.New(zap.DebugLevel)
	w.logs = logs
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := gateway.Config{Listener: ln, Certificate: &w.srv.Cert, Logger: zap.New(core),
		Admin: admin.Config{Listen: "127.0.0.1:0"}}
	for _, ts := range tenants {
		cfg.Tenants = append(cfg.Tenants, gateway.TenantConfig{Name: ts.name, ConnectorPins: []auth.Pin{ts.pin}})
	}
	if mod != nil {
		mod(&cfg)
	}
	w.gw, err = gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- w.gw.Run(ctx) }()
	w.addr = w.gw.Addr().String()
	t.Cleanup(w.stop)
	return w
}

func (w *world) stop() {
	w.cancel()
	select {
	case <-w.done:
	case <-time.After(hangGuard):
		w.t.Error("gateway did not stop")
	}
}

// conn is a running connector.
type conn struct {
	c      *connector.Connector
	cancel context.CancelFunc
	done   chan struct{}
}

// startConnector runs a connector of ts toward the world's gateway.
func (w *world) startConnector(t testing.TB, ts *tenantSpec, svcs []connector.ServiceConfig, mod func(*connector.Config)) *conn {
	t.Helper()
	var roots *x509.CertPool
	if w.srv != nil {
		roots = w.srv.Roots
	}
	cfg := connector.Config{
		ID: "conn-" + ts.name, Tenant: ts.name, Certificate: &ts.connKey,
		Gateways:    []connector.GatewayConfig{{Address: w.addr, ServerName: "localhost", RootCAs: roots}},
		TrustBundle: []*x509.Certificate{ts.ca.Cert},
		Services:    svcs,
		Backoff:     connector.BackoffConfig{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Logger:      zap.NewNop(),
		Admin:       admin.Config{Listen: "127.0.0.1:0"},
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := connector.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cn := &conn{c: c, cancel: cancel, done: make(chan struct{})}
	go func() { c.Run(ctx); close(cn.done) }()
	t.Cleanup(cn.stop)
	return cn
}

func (c *conn) stop() {
	c.cancel()
	<-c.done
}

// waitFor polls cond until it holds or the hang guard fires.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// agent returns an HTTP client that presents cert to the world's gateway.
func (w *world) agent(cert *tls.Certificate, h2 bool) *http.Client {
	conf := &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: h2, MaxIdleConnsPerHost: 64}
	if !h2 {
		conf.NextProtos = []string{"http/1.1"}
	}
	c := &http.Client{Transport: tr, Timeout: hangGuard}
	w.t.Cleanup(tr.CloseIdleConnections)
	return c
}

func (w *world) url(path string) string { return "https://" + w.addr + path }

// logged reports whether the gateway logged msg with a field containing s.
func (w *world) logged(msg, s string) bool {
	for _, e := range w.logs.FilterMessage(msg).All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, s) || (f.Interface != nil && strings.Contains(errString(f.Interface), s)) {
				return true
			}
		}
	}
	return false
}

func errString(v any) string {
	if e, ok := v.(error); ok {
		return e.Error()
	}
	return ""
}

// coreServer is a toy core that echoes what it saw.
type coreServer struct {
	ln   net.Listener
	srv  *http.Server
	mu   sync.Mutex
	seen []*http.Request
}

func startCore(t testing.TB, h http.Handler) *coreServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &coreServer{ln: ln}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.seen = append(c.seen, r.Clone(context.Background()))
		c.mu.Unlock()
		h.ServeHTTP(rw, r)
	}), ReadHeaderTimeout: hangGuard}
	go c.srv.Serve(ln)
	t.Cleanup(func() { c.srv.Close() })
	return c
}

func (c *coreServer) addr() string { return c.ln.Addr().String() }

func (c *coreServer) last() *http.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) == 0 {
		return nil
	}
	return c.seen[len(c.seen)-1]
}

// waitServed waits until the gateway serves tenant with n sessions.
func (w *world) waitServed(t testing.TB, tenant string, n int) {
	t.Helper()
	waitFor(t, "tenant "+tenant+" served", func() bool {
		for _, ts := range w.gw.Tenants() {
			if ts.Name == tenant && ts.Served && ts.Sessions >= n {
				return true
			}
		}
		return false
	})
}

func (c *coreServer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
