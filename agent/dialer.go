package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs"
)

// ALPN protocols the agent offers to a gateway.
const (
	// ALPNEnroll is the enrollment endpoint's protocol (docs/ENROLLMENT.md).
	ALPNEnroll = "sekisho-enroll/1"
	alpnH2     = "h2"
	alpnHTTP1  = "http/1.1"
)

// gateway is one configured gateway, ready to dial.
type gateway struct {
	address string
	host    string // the server name, for Host headers
	tls     *tls.Config
}

// dialer opens TLS connections to the gateways in order, starting at the
// last one that worked.
type dialer struct {
	gateways []gateway
	current  atomic.Int32 // index of the gateway that worked last
	dialTCP  func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout  time.Duration
	log      *zap.Logger
}

// newDialer loads the gateways' roots; cfg has its defaults.
func newDialer(cfg Config) (*dialer, error) {
	d := &dialer{dialTCP: cfg.DialContext, timeout: cfg.DialTimeout, log: cfg.Logger}
	for i, g := range cfg.Gateways {
		gw, err := newGateway(g)
		if err != nil {
			return nil, fmt.Errorf("gateways[%d]: %w", i, err)
		}
		d.gateways = append(d.gateways, gw)
	}
	if len(d.gateways) == 0 {
		return nil, errors.New("no gateway configured")
	}
	return d, nil
}

func newGateway(g GatewayConfig) (gateway, error) {
	host, _, err := net.SplitHostPort(g.Address)
	if err != nil {
		return gateway{}, fmt.Errorf("address %q: %w", g.Address, err)
	}
	roots := g.RootCAs
	if roots == nil && g.CAFile != "" {
		cas, err := certs.LoadCerts(g.CAFile)
		if err != nil {
			return gateway{}, fmt.Errorf("ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		for _, c := range cas {
			roots.AddCert(c)
		}
	}
	cfg := certs.ClientConfig(nil)
	cfg.RootCAs = roots // nil: the system roots
	cfg.ServerName = g.ServerName
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	return gateway{address: g.Address, host: cfg.ServerName, tls: cfg}, nil
}

// dialOptions say how to shake hands with a gateway.
type dialOptions struct {
	protos []string
	// cert, when set, gives the client certificate to present.
	cert func() *tls.Certificate
	// sessions, when set, resumes TLS sessions.
	sessions tls.ClientSessionCache
}

// dial returns a TLS connection to the first gateway, from the last one
// that worked, whose dial and handshake succeed and that negotiates one
// of opts.protos.
func (d *dialer) dial(ctx context.Context, opts dialOptions) (*tls.Conn, *gateway, error) {
	var conn *tls.Conn
	gw, err := d.try(ctx, len(d.gateways), func(ctx context.Context, gw *gateway) (err error) {
		conn, err = d.dialOne(ctx, gw, opts)
		return err
	})
	return conn, gw, err
}

// try calls dial on up to n gateways in order, from the last one that
// worked, each within the dial timeout, until one succeeds; that one
// becomes the current gateway.
func (d *dialer) try(ctx context.Context, n int, dial func(context.Context, *gateway) error) (*gateway, error) {
	start := int(d.current.Load())
	var errs []error
	for i := range min(n, len(d.gateways)) {
		idx := (start + i) % len(d.gateways)
		gw := &d.gateways[idx]
		dctx, cancel := context.WithTimeout(ctx, d.timeout)
		err := dial(dctx, gw)
		cancel()
		if err == nil {
			if idx != start {
				d.log.Info("gateway failover", zap.String("gateway", gw.address))
			}
			d.current.Store(int32(idx))
			return gw, nil
		}
		errs = append(errs, fmt.Errorf("gateway %s: %w", gw.address, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialOne dials gw over TCP and shakes hands; ctx bounds both.
func (d *dialer) dialOne(ctx context.Context, gw *gateway, opts dialOptions) (*tls.Conn, error) {
	raw, err := d.dialTCP(ctx, "tcp", gw.address)
	if err != nil {
		return nil, err
	}
	cfg := d.tlsConfig(gw, opts)
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake: %w", err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; !acceptProto(p, opts.protos) {
		conn.Close()
		return nil, fmt.Errorf("gateway negotiated protocol %q, want one of %q", p, opts.protos)
	}
	return conn, nil
}

// tlsConfig is the client TLS config for gw with opts.
func (d *dialer) tlsConfig(gw *gateway, opts dialOptions) *tls.Config {
	cfg := gw.tls.Clone()
	cfg.NextProtos = opts.protos
	cfg.ClientSessionCache = opts.sessions
	if opts.cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return opts.cert(), nil
		}
	}
	return cfg
}

// acceptProto reports whether the negotiated protocol p is one we offered;
// no ALPN at all is taken as HTTP/1.1 when we offered it.
func acceptProto(p string, offered []string) bool {
	if p == "" {
		return slices.Contains(offered, alpnHTTP1)
	}
	return slices.Contains(offered, p)
}

// address returns the address of the gateway that worked last.
func (d *dialer) address() string {
	return d.gateways[d.current.Load()].address
}
