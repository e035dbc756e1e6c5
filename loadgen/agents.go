package loadgen

import (
	"context"
	"crypto"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
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
}

// fleet makes agents: certificates from the CA (one key for all, so that
// minting 100 000 certificates stays cheap; the gateway sees distinct
// devices), and clients bound to source addresses or shared UDP sockets.
type fleet struct {
	cfg  Config
	key  crypto.Signer
	base string

	mu      sync.Mutex
	sockets []*quic.Transport // QUIC: one per AgentsPerSocket agents
}

func newFleet(cfg Config) (*fleet, error) {
	key, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	return &fleet{cfg: cfg, key: key, base: "https://" + cfg.Target}, nil
}

// newAgent mints agent i's certificate and builds its client.
func (f *fleet) newAgent(i int) (*agent, error) {
	id := fmt.Sprintf("load-%06d", i)
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
	if !f.cfg.HTTP2 {
		conf.NextProtos = []string{"http/1.1"}
	}
	tr := &http.Transport{
		DialContext: d.DialContext, TLSClientConfig: conf, ForceAttemptHTTP2: f.cfg.HTTP2,
		MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, IdleConnTimeout: 0,
		DisableCompression: true, TLSHandshakeTimeout: f.cfg.RequestTimeout,
	}
	return &agent{id: id, base: f.base, client: &http.Client{Transport: tr, Timeout: f.cfg.RequestTimeout}, close: tr.CloseIdleConnections}
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
	qc := &quic.Config{KeepAlivePeriod: 0, MaxIdleTimeout: 5 * time.Minute, HandshakeIdleTimeout: f.cfg.RequestTimeout}
	tr := &http3.Transport{
		TLSClientConfig: conf, QUICConfig: qc,
		Dial: func(ctx context.Context, _ string, tlsConf *tls.Config, qconf *quic.Config) (*quic.Conn, error) {
			return qt.Dial(ctx, addr, tlsConf, qconf)
		},
	}
	return &agent{id: id, base: f.base, client: &http.Client{Transport: tr, Timeout: f.cfg.RequestTimeout}, close: func() { tr.Close() }}, nil
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
}
