package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Source provides the gateway's public serving certificate: files with hot
// reload (FileSource), ACME (ACMESource) or a fixed pair (StaticSource).
type Source interface {
	// GetCertificate serves the current certificate for a ClientHello; it
	// fits tls.Config.GetCertificate.
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Leaf returns the certificate currently served for the main name (for
	// expiry metrics), or nil.
	Leaf() *x509.Certificate
	// Run does the background work (file watching, ACME renewal) and
	// returns when ctx ends.
	Run(ctx context.Context) error
}

var (
	_ Source = (*StaticSource)(nil)
	_ Source = (*FileSource)(nil)
	_ Source = (*ACMESource)(nil)
)

// ACMETLSALPN is the ALPN protocol of the ACME TLS-ALPN-01 challenge
// (RFC 8737).
const ACMETLSALPN = "acme-tls/1"

// ErrNotReady is returned by GetCertificate while a source has no
// certificate to serve yet (an ACMESource before Run).
var ErrNotReady = errors.New("no serving certificate yet")

// IsTLSALPNChallenge reports whether hello is an ACME TLS-ALPN-01
// validation: a server name and "acme-tls/1" as the only ALPN protocol, as
// RFC 8737 requires of the CA. A hello that offers acme-tls/1 among other
// protocols is not one, and must get the ordinary policy.
func IsTLSALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return hello.ServerName != "" && len(hello.SupportedProtos) == 1 &&
		hello.SupportedProtos[0] == ACMETLSALPN
}

// LeafOf returns a function for ExpiryWatcher that yields the leaf src
// currently serves, or nothing while it has none.
func LeafOf(src Source) func() []*x509.Certificate {
	return func() []*x509.Certificate {
		if l := src.Leaf(); l != nil {
			return []*x509.Certificate{l}
		}
		return nil
	}
}

// RedirectHTTPS answers every request with 308 Permanent Redirect to the
// same path and query over https on the default port. The target host is
// the request's host when it is one of hosts (case-insensitive), else
// hosts[0], so that a forged Host header cannot turn the redirect toward
// another site; with no hosts, the request's host is kept (400 without
// one). It never proxies and never reads the body.
func RedirectHTTPS(hosts []string) http.Handler {
	allowed := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		allowed[strings.ToLower(h)] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(hostOnly(r.Host))
		if len(hosts) > 0 && !allowed[host] {
			host = strings.ToLower(hosts[0])
		}
		if host == "" {
			http.Error(w, "no host to redirect to", http.StatusBadRequest)
			return
		}
		if strings.Contains(host, ":") { // IPv6 literal
			host = "[" + host + "]"
		}
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
		if target.Path == "" {
			target.Path = "/"
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
}

// hostOnly strips the port from a Host header value.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

// StaticSource serves one fixed certificate: the demo's and the tests'.
type StaticSource struct {
	cert *tls.Certificate
}

// NewStaticSource returns a source that always serves cert. It fills
// cert.Leaf when it is unset.
func NewStaticSource(cert tls.Certificate) (*StaticSource, error) {
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return nil, errors.New("static source: certificate and key required")
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, err
		}
		cert.Leaf = leaf
	}
	return &StaticSource{cert: &cert}, nil
}

// GetCertificate returns the certificate.
func (s *StaticSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert, nil
}

// Leaf returns the parsed leaf.
func (s *StaticSource) Leaf() *x509.Certificate { return s.cert.Leaf }

// Run waits for ctx to end: a static source has no background work.
func (s *StaticSource) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}
