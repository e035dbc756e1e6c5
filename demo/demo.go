package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/tunnel"
)

// Options configure a demo run. The zero value means the defaults.
type Options struct {
	// Agents is the number of simulated agents. Default 20.
	Agents int
	// Duration is how long the agents work. Default 10s.
	Duration time.Duration
	// Interval is each agent's pause between requests. Default 50ms.
	Interval time.Duration
	// PayloadSize is the size of the patch payload. Default 4 MiB.
	PayloadSize int64
	// Progress, when set, receives a line per second.
	Progress io.Writer
	// Logger receives the roles' logs. Default: none.
	Logger *zap.Logger
	// Admin is the gateway's admin listener (status page, metrics); the
	// connector's takes the next free port. Default 127.0.0.1:0; "off"
	// for none.
	Admin string
	// OnAdmin, when set, is told the admin URLs once they listen.
	OnAdmin func(gateway, connector string)
	// Transport is the tunnel's: tcp (yamux over TLS, default) or quic.
	Transport string
	// AgentTransport is the agents': tcp (HTTP/1.1 and HTTP/2, default) or
	// quic (HTTP/3).
	AgentTransport string
	// NoAgents runs no simulated agents: the roles serve for the duration,
	// for the load generator or a browser.
	NoAgents bool
	// PKIDir, when set, receives the demo tenant's CA (ca.pem, ca.key) and
	// the CA of the gateway's certificate (gateway-ca.pem), so that other
	// programs (sekisho loadgen) can make agents.
	PKIDir string
	// OnGateway, when set, is told the gateway's agent addresses once it
	// serves: TCP (HTTP/1.1, HTTP/2) and UDP (HTTP/3).
	OnGateway func(tcp, h3 string)
}

func (o Options) withDefaults() Options {
	if o.Agents == 0 {
		o.Agents = 20
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.PayloadSize == 0 {
		o.PayloadSize = 4 << 20
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Admin == "" {
		o.Admin = "127.0.0.1:0"
	}
	if o.Transport == "" {
		o.Transport = tunnel.TransportTCP
	}
	if o.AgentTransport == "" {
		o.AgentTransport = tunnel.TransportTCP
	}
	return o
}

const tenantName = "demo"

// The demo tenant's relay budget: what the connector lets cross the tunnel
// as payload (the uncatalogued patch), at most relayConcurrent downloads
// at once and relayBudget bytes per second.
const (
	relayConcurrent = 4
	relayBudget     = 64 << 20
)

// Run starts the toy core, a connector, a gateway and the agents on
// loopback, lets the agents work for the duration (or until ctx ends) and
// returns what they saw.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	opts = opts.withDefaults()
	if opts.Agents < 1 || opts.Duration < 0 || opts.Interval < 0 || opts.PayloadSize < 0 {
		return nil, errors.New("demo: agents must be positive, durations and sizes not negative")
	}
	for _, tr := range []string{opts.Transport, opts.AgentTransport} {
		if tr != tunnel.TransportTCP && tr != tunnel.TransportQUIC {
			return nil, fmt.Errorf("demo: transport %q: want tcp or quic", tr)
		}
	}
	st, err := startStack(opts)
	if err != nil {
		return nil, err
	}
	defer st.close()
	if err := st.waitServed(ctx, 10*time.Second); err != nil {
		return nil, err
	}
	if opts.OnAdmin != nil && opts.Admin != "off" {
		opts.OnAdmin("http://"+st.gw.AdminAddr().String()+"/", fmt.Sprint("http://", st.conn.AdminAddr(), "/"))
	}
	if opts.PKIDir != "" {
		if err := st.writePKI(opts.PKIDir); err != nil {
			return nil, err
		}
	}
	if opts.OnGateway != nil {
		opts.OnGateway(st.gwAddr, st.h3Addr)
	}
	var agents []*agent
	enrollStart := time.Now()
	if !opts.NoAgents {
		if agents, err = st.enrollAgents(ctx, opts); err != nil {
			return nil, err
		}
	}
	enrolled := time.Since(enrollStart)
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	stats := newStats()
	start := time.Now()
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(func() { a.run(runCtx, opts.Interval, stats) })
	}
	if opts.Progress != nil && !opts.NoAgents {
		wg.Go(func() { stats.progress(runCtx, opts.Progress, start) })
	}
	wg.Wait()
	<-runCtx.Done()
	sum := stats.summary(opts, time.Since(start), st.tunnelTransport())
	sum.Agents, sum.Enrolled, sum.EnrollSeconds = len(agents), len(agents), enrolled.Seconds()
	sum.TunnelBytes = int64(st.conn.Status().Totals.BytesRelayed)
	sum.RedirectedBytes = int64(st.gw.Status().Totals.BytesRedirected)
	for _, a := range agents {
		ps := a.follower.Stats()
		sum.Payloads.Verified += ps.Verified
		sum.Payloads.VerifyFailures += ps.SignatureFailures + ps.DigestMismatches
		sum.Payloads.FromCDN += ps.BytesFromSources
	}
	return sum, nil
}

// stack is every role of the demo, running.
type stack struct {
	core      *core
	coreSrv   *http.Server
	gw        *gateway.Server
	conn      *connector.Connector
	ca        *certs.CA
	roots     *x509.CertPool
	gwCA      *x509.Certificate
	dir       string // the registry and the agents' state, removed at the end
	gwAddr    string
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	mu        sync.Mutex // guards transport: agents enroll in parallel
	transport []interface{ CloseIdleConnections() }
	h3Addr    string // agents' HTTP/3 port
	quicAddr  string // the QUIC tunnel port
	cdn       *cdn   // the toy vendor CDN
}

func startStack(opts Options) (*stack, error) {
	st := &stack{core: &core{payloadSize: opts.PayloadSize}}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel = cancel
	ok := false
	defer func() {
		if !ok {
			st.close()
		}
	}()
	coreLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	st.coreSrv = &http.Server{Handler: st.core.handler(), ReadHeaderTimeout: 10 * time.Second}
	st.wg.Go(func() { st.coreSrv.Serve(coreLn) })
	if st.cdn, err = startCDN(opts.PayloadSize); err != nil {
		return nil, err
	}

	now := time.Now()
	if st.ca, err = certs.NewCA(tenantName, now, 0); err != nil {
		return nil, err
	}
	serverCert, err := st.gatewayCert(now)
	if err != nil {
		return nil, err
	}
	connKey, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	connCert, err := certs.SelfSigned(connKey, "demo connector", now)
	if err != nil {
		return nil, err
	}
	if err := st.startGateway(ctx, serverCert, auth.PinOfCert(connCert.Leaf), opts); err != nil {
		return nil, err
	}
	if err := st.startConnector(ctx, connCert, coreLn.Addr().String(), opts); err != nil {
		return nil, err
	}
	ok = true
	return st, nil
}

// gatewayCert makes the gateway's "public" certificate from a throwaway CA
// that the agents and the connector trust.
func (st *stack) gatewayCert(now time.Time) (tls.Certificate, error) {
	pub, err := certs.NewCA("public", now, 0)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := certs.NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := pub.IssueServer(key.Public(), []string{"localhost", "127.0.0.1"}, now, 90*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	st.roots = x509.NewCertPool()
	st.roots.AddCert(pub.Cert)
	st.gwCA = pub.Cert
	return certs.TLSCertificate(leaf, key), nil
}

func (st *stack) startGateway(ctx context.Context, cert tls.Certificate, pin auth.Pin, opts Options) error {
	log := opts.Logger
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	h3, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return err
	}
	qt, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		h3.Close()
		return err
	}
	st.h3Addr, st.quicAddr = h3.LocalAddr().String(), qt.LocalAddr().String()
	st.gw, err = gateway.New(gateway.Config{
		QUIC:   gateway.QUICConfig{Conn: h3, TunnelConn: qt},
		Limits: gateway.Limits{EnrollPerSource: 100000}, // every demo agent is 127.0.0.1
		ID:     "demo-gateway", Listener: ln, Certificate: &cert, Logger: log.Named("gateway"),
		Admin: admin.Config{Listen: opts.Admin}, Version: "demo",
		Tenants: []gateway.TenantConfig{{Name: tenantName, ConnectorPins: []auth.Pin{pin}}},
	})
	if err != nil {
		ln.Close()
		h3.Close()
		qt.Close()
		return err
	}
	st.gwAddr = ln.Addr().String()
	st.wg.Go(func() { st.gw.Run(ctx) })
	return nil
}

func (st *stack) startConnector(ctx context.Context, cert tls.Certificate, coreAddr string, opts Options) error {
	log := opts.Logger
	adminAddr := "off"
	if opts.Admin != "off" {
		adminAddr = "127.0.0.1:0"
	}
	dir, err := os.MkdirTemp("", "sekisho-demo-")
	if err != nil {
		return err
	}
	st.dir = dir
	catalog, err := writeCatalog(dir, opts.PayloadSize, st.cdn.url)
	if err != nil {
		return err
	}
	catKey, err := catalogKey()
	if err != nil {
		return err
	}
	st.conn, err = connector.New(connector.Config{
		ID: "demo-connector", Tenant: tenantName, Certificate: &cert, Logger: log.Named("connector"),
		DeviceRegistry: filepath.Join(dir, "registry.db"), SigningCA: st.ca,
		Payloads: connector.PayloadsConfig{Catalog: catalog, Keys: []ed25519.PrivateKey{catKey},
			Relay: connector.RelayConfig{MaxConcurrent: relayConcurrent, BytesPerSecond: relayBudget,
				PathPrefixes: []string{"/patches/"}, RetryAfter: time.Second}},
		Admin:       admin.Config{Listen: adminAddr},
		Transport:   opts.Transport,
		Gateways:    []connector.GatewayConfig{{Address: st.gwAddr, QUICAddress: st.quicAddr, ServerName: "localhost", RootCAs: st.roots}},
		TrustBundle: []*x509.Certificate{st.ca.Cert},
		Services: []connector.ServiceConfig{
			{Name: "core", PathPrefix: "/", Address: coreAddr},
		},
	})
	if err != nil {
		return err
	}
	st.wg.Go(func() { st.conn.Run(ctx) })
	return nil
}

// waitServed waits until the gateway serves the tenant through at least one
// connector session.
func (st *stack) waitServed(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		for _, ts := range st.gw.Tenants() {
			if ts.Name == tenantName && ts.Sessions > 0 && ts.SnapshotVersion > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the connector did not reach the gateway in time")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (st *stack) close() {
	st.mu.Lock()
	for _, t := range st.transport {
		t.CloseIdleConnections()
	}
	st.mu.Unlock()
	if st.cancel != nil {
		st.cancel()
	}
	if st.coreSrv != nil {
		st.coreSrv.Close()
	}
	if st.cdn != nil {
		st.cdn.srv.Close()
	}
	st.wg.Wait()
	if st.dir != "" {
		os.RemoveAll(st.dir)
	}
}

// writePKI writes the demo tenant's CA and the gateway's CA certificate.
func (st *stack) writePKI(dir string) error {
	if err := certs.WriteKey(filepath.Join(dir, "ca.key"), st.ca.Key); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := certs.WriteCert(filepath.Join(dir, "ca.pem"), st.ca.Cert.Raw); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := certs.WriteCert(filepath.Join(dir, "gateway-ca.pem"), st.gwCA.Raw); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// tunnelTransport is the transport the connector's sessions use now.
func (st *stack) tunnelTransport() string {
	for _, ts := range st.gw.Tenants() {
		for _, c := range ts.Connectors {
			return c.Transport
		}
	}
	return "none"
}
