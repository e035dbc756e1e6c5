package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// Client talks to the gateways with the device certificate. It dials them
// in order, sticking to the last one that worked and moving to the next
// when a dial or handshake fails. The certificate can be swapped while the
// client is in use (SetCertificate): new connections present the new one.
//
// HTTP requests go over TCP or HTTP/3 as Config.Transport says; CONNECT
// tunnels always over TCP.
type Client struct {
	dialer       *dialer
	cert         atomic.Pointer[tls.Certificate]
	sessions     atomic.Pointer[sessionCache]
	quicSessions atomic.Pointer[sessionCache]

	tcp  *http.Transport
	h3   *http3.Transport // nil unless Transport is quic or auto
	auto *autoTransport   // nil unless Transport is auto
	roam *roamer          // follows h3's connections across networks; nil when h3 is

	// transport carries HTTPClient's requests and the local proxy's: tcp,
	// h3 or auto.
	transport http.RoundTripper
	http      *http.Client
}

// sessionCache wraps a TLS session cache so that it can be swapped
// atomically: TLS 1.3 resumption would otherwise carry on the identity of
// the certificate a session was made with.
type sessionCache struct{ tls.ClientSessionCache }

// NewClient returns a client for cfg's gateways that presents cert.
func NewClient(cfg Config, cert tls.Certificate) (*Client, error) {
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("new gateway client: no certificate")
	}
	cfg = cfg.withDefaults()
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkTransport(cfg.Transport); err != nil {
		return nil, fmt.Errorf("transport: %w", err)
	}
	c := &Client{dialer: d}
	c.SetCertificate(cert)
	c.tcp = &http.Transport{
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, _, err := c.dial(ctx, alpnH2, alpnHTTP1)
			return conn, err
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
		// Proxy stays nil: the gateways are dialed directly, whatever the
		// environment says.
	}
	c.transport = c.tcp
	if cfg.Transport != TransportTCP {
		c.roam = newRoamer(cfg)
		c.h3 = c.newH3(cfg)
		c.transport = c.h3
	}
	if cfg.Transport == TransportAuto {
		c.auto = &autoTransport{h3: c.h3, tcp: c.tcp, now: cfg.Now, retry: autoQUICRetry, log: cfg.Logger}
		c.transport = c.auto
	}
	c.http = &http.Client{
		Transport: c.transport,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

// HTTPClient returns a client whose every request goes to the gateways,
// whatever its URL's host: that host is sent as the Host header (the
// gateway routes by Host and path to the tenant's services) and keys the
// connection pool. Redirects are not followed: a redirect's target would
// be sent to the gateways too.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Certificate returns the certificate presented on new connections.
func (c *Client) Certificate() *tls.Certificate { return c.cert.Load() }

// SetCertificate makes new connections present cert. Connections already
// open keep the certificate they were made with; idle ones are closed.
func (c *Client) SetCertificate(cert tls.Certificate) {
	c.cert.Store(&cert)
	c.sessions.Store(&sessionCache{tls.NewLRUClientSessionCache(64)})
	c.quicSessions.Store(&sessionCache{tls.NewLRUClientSessionCache(8)})
	if c.tcp != nil {
		c.CloseIdleConnections()
	}
}

// Gateway returns the address of the gateway that worked last.
func (c *Client) Gateway() string { return c.dialer.address() }

// CloseIdleConnections closes the idle connections of HTTPClient. When no
// QUIC connection is left, the network watcher has stopped on return.
func (c *Client) CloseIdleConnections() {
	c.tcp.CloseIdleConnections()
	if c.h3 != nil {
		c.h3.CloseIdleConnections()
		c.roam.settle()
	}
}

// dial opens a connection for the agent protocols with the device
// certificate.
func (c *Client) dial(ctx context.Context, protos ...string) (*tls.Conn, *gateway, error) {
	return c.dialer.dial(ctx, dialOptions{
		protos:   protos,
		cert:     c.Certificate,
		sessions: c.sessions.Load(),
	})
}
