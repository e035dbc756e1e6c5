package loadgen

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/sekisho/sekisho/certs"
)

// agent is one simulated PC: its own certificate and its own connection.
type agent struct {
	id     string
	base   string // https://target
	client *http.Client
	close  func()
	// drop closes the agent's idle connection, so that the next request
	// dials a new one (http3 keeps a connection whose requests time out).
	drop func()
	// lost is signalled when a connection that finished its handshake
	// ends, whoever ended it.
	lost chan struct{}
}

func newAgentOf(id, base string) *agent {
	return &agent{id: id, base: base, lost: make(chan struct{}, 1)}
}

// connLost notes that the agent's connection ended; it never blocks.
func (a *agent) connLost() {
	select {
	case a.lost <- struct{}{}:
	default:
	}
}

// drainLost forgets a loss already noted (of a connection now replaced).
func (a *agent) drainLost() {
	select {
	case <-a.lost:
	default:
	}
}

// fleet makes agents: certificates from the CA (one key for all, so that
// minting 100 000 certificates stays cheap; the gateway sees distinct
// devices), and clients bound to source addresses or shared UDP sockets.
type fleet struct {
	cfg  Config
	key  crypto.Signer
	base string

	// sources fetches from hosts other than the gateway: the vendor CDN a
	// signed payload redirect points to. An agent's certificate and its
	// trust in the gateway's CA are for the gateway only.
	sources *http.Transport

	mu      sync.Mutex
	sockets []*quic.Transport // QUIC: one per AgentsPerSocket agents
}

// toGateway sends the agent's requests for the gateway over its own
// transport, and those a redirect sends elsewhere over the fleet's shared
// one.
type toGateway struct {
	host             string
	gateway, sources http.RoundTripper
}

func (t toGateway) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "https" && r.URL.Host == t.host {
		return t.gateway.RoundTrip(r)
	}
	return t.sources.RoundTrip(r)
}

// client is an agent's HTTP client over its gateway transport.
func (f *fleet) client(gateway http.RoundTripper) *http.Client {
	return &http.Client{Transport: toGateway{host: f.cfg.Target, gateway: gateway, sources: f.sources},
		Timeout: f.cfg.RequestTimeout}
}

func newFleet(cfg Config) (*fleet, error) {
	key, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	sources := &http.Transport{
		Proxy: nil, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
		TLSHandshakeTimeout: cfg.RequestTimeout, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	return &fleet{cfg: cfg, key: key, base: "https://" + cfg.Target, sources: sources}, nil
}

// newAgent mints agent i's certificate and builds its client.
func (f *fleet) newAgent(i int) (*agent, error) {
	id := fmt.Sprintf("load-%06d", f.cfg.FirstAgent+i)
	leaf, err := f.cfg.CA.IssueAgent(certs.AgentRequest{DeviceID: id, PublicKey: f.key.Public(), Now: time.Now(), Lifetime: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	conf := &tls.Config{
		RootCAs: f.cfg.RootCAs, ServerName: f.cfg.ServerName, MinVersion: tls.VersionTLS13,
		Certificates:     []tls.Certificate{certs.TLSCertificate(leaf, f.key)},
		CurvePreferences: f.cfg.Curves,
	}
	if f.cfg.Transport == "quic" {
		return f.quicAgent(id, i, conf)
	}
	return f.tcpAgent(id, i, conf), nil
}

func (f *fleet) tcpAgent(id string, i int, conf *tls.Config) *agent {
	d := &net.Dialer{Timeout: f.cfg.RequestTimeout, KeepAlive: -1}
	if ip := f.sourceIP(i); ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	conf.NextProtos = []string{"http/1.1"}
	if f.cfg.HTTP2 {
		conf.NextProtos = []string{"h2", "http/1.1"}
	}
	a := newAgentOf(id, f.base)
	timeout := f.cfg.RequestTimeout
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialTLS(ctx, d, network, addr, conf, timeout, a.connLost)
		},
		ForceAttemptHTTP2: f.cfg.HTTP2,
		MaxConnsPerHost:   1, MaxIdleConnsPerHost: 1, IdleConnTimeout: 0,
		DisableCompression: true,
	}
	a.client = f.client(tr)
	a.close, a.drop = tr.CloseIdleConnections, tr.CloseIdleConnections
	return a
}

// dialTLS dials addr and completes the TLS handshake within timeout. The
// connection calls onEnd once when it ends, but only if its handshake
// succeeded: a refused attempt is not a lost connection.
func dialTLS(ctx context.Context, d *net.Dialer, network, addr string, conf *tls.Config, timeout time.Duration, onEnd func()) (net.Conn, error) {
	raw, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	w := &watchedConn{Conn: raw}
	tc := tls.Client(w, conf)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	w.onEnd.Store(&onEnd)
	return tc, nil
}

// watchedConn reports its end once: a failed read (the peer closed,
// reset or went away) or a close (the HTTP transport closes a connection
// it gave up on, after a TLS close_notify for instance, which the TLS
// layer reads without a failed read underneath).
type watchedConn struct {
	net.Conn
	onEnd atomic.Pointer[func()]
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.ended()
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.ended()
	return c.Conn.Close()
}

func (c *watchedConn) ended() {
	if f := c.onEnd.Swap(nil); f != nil {
		(*f)()
	}
}

// sourceIP spreads loopback agents over 127.0.0.2 and up.
func (f *fleet) sourceIP(i int) net.IP {
	host, _, _ := net.SplitHostPort(f.cfg.Target)
	ip := net.ParseIP(host)
	if f.cfg.SourceIPs <= 0 || ip == nil || !ip.IsLoopback() || ip.To4() == nil {
		return nil
	}
	return net.IPv4(127, 0, 0, byte(2+i%f.cfg.SourceIPs))
}

func (f *fleet) quicAgent(id string, i int, conf *tls.Config) (*agent, error) {
	qt, err := f.socket(i)
	if err != nil {
		return nil, err
	}
	addr, err := net.ResolveUDPAddr("udp", f.cfg.Target)
	if err != nil {
		return nil, err
	}
	// quic-go gives a handshake twice HandshakeIdleTimeout: a stalled
	// dial (which http3 shares between the requests waiting for it) then
	// ends within RequestTimeout and the next attempt dials afresh.
	qc := &quic.Config{KeepAlivePeriod: 0, MaxIdleTimeout: 5 * time.Minute, HandshakeIdleTimeout: f.cfg.RequestTimeout / 2}
	a := newAgentOf(id, f.base)
	tr := &http3.Transport{
		TLSClientConfig: conf, QUICConfig: qc,
		Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, qconf *quic.Config) (*quic.Conn, error) {
			c, err := qt.Dial(ctx, addr, tlsConf, qconf)
			if err != nil {
				return nil, err
			}
			// The handshake is done: from now on its end is a loss.
			context.AfterFunc(c.Context(), a.connLost)
			return c, nil
		},
	}
	a.client = f.client(tr)
	a.close, a.drop = func() { tr.Close() }, tr.CloseIdleConnections
	return a, nil
}

// socket returns the shared UDP socket for agent i.
func (f *fleet) socket(i int) (*quic.Transport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := i / f.cfg.AgentsPerSocket
	for len(f.sockets) <= k {
		var local *net.UDPAddr
		if host, _, _ := net.SplitHostPort(f.cfg.Target); net.ParseIP(host).IsLoopback() {
			local = &net.UDPAddr{IP: net.ParseIP(host)}
		}
		c, err := net.ListenUDP("udp", local)
		if err != nil {
			return nil, err
		}
		f.sockets = append(f.sockets, &quic.Transport{Conn: c})
	}
	return f.sockets[k], nil
}

// close releases the shared sockets.
func (f *fleet) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.sockets {
		s.Close()
		s.Conn.Close()
	}
	f.sockets = nil
	f.sources.CloseIdleConnections()
}
