package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs"
)

// newCertSource picks where the gateway's certificate comes from: given
// in the config (tests, the demo), files reloaded on change, or ACME.
func newCertSource(cfg Config) (certs.Source, error) {
	switch {
	case cfg.CertSource != nil:
		return cfg.CertSource, nil
	case cfg.Certificate != nil:
		return certs.NewStaticSource(*cfg.Certificate)
	case cfg.TLS.ACME != nil:
		return newACMESource(cfg)
	}
	src, err := certs.NewFileSource(cfg.TLS.CertFile, cfg.TLS.KeyFile, certs.FileOptions{
		Now: cfg.Now, Logger: cfg.Logger.Named("certificate")})
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return src, nil
}

func newACMESource(cfg Config) (certs.Source, error) {
	a := cfg.TLS.ACME
	src, err := certs.NewACMESource(certs.ACMEOptions{
		Domains: a.Domains, CA: a.CA, Email: a.Email, StorageDir: a.Storage,
		TrustedRootsFile: a.TrustedRootsFile, TrustedRoots: a.TrustedRoots,
		DisableHTTP01: !a.challenge("http-01"), DisableTLSALPN01: !a.challenge("tls-alpn-01"),
		HTTPPort: a.HTTPPort, TLSALPNPort: a.TLSALPNPort, Profile: a.Profile, Logger: cfg.Logger.Named("acme"),
		RenewalWindowRatio: a.RenewalWindow, RenewCheckInterval: a.RenewCheckInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("tls.acme: %w", err)
	}
	return src, nil
}

// acmeSource returns the ACME source, or nil.
func (s *Server) acmeSource() *certs.ACMESource {
	a, _ := s.certs.(*certs.ACMESource)
	return a
}

// servingLeaf is the certificate the gateway serves now.
func (s *Server) servingLeaf() *x509.Certificate { return s.certs.Leaf() }

// runCertificates runs the certificate source (file watching, ACME
// issuance and renewal), the HTTP-01 listener and the expiry watcher.
func (s *Server) runCertificates(ctx context.Context) error {
	if s.httpLn != nil {
		srv := &http.Server{Handler: s.challengeHandler(), ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10, ErrorLog: zap.NewStdLog(s.log.Named("http01"))}
		stop := context.AfterFunc(ctx, func() { srv.Close() })
		defer stop()
		s.wg.Go(func() { srv.Serve(s.httpLn) })
	}
	watch, err := certs.NewExpiryWatcher("gateway certificate", certs.LeafOf(s.certs),
		certs.ExpiryOptions{Now: s.cfg.Now, Logger: s.log})
	if err != nil {
		return err
	}
	s.wg.Go(func() { watch.Run(ctx) })
	bundles, err := certs.NewExpiryWatcher("tenant agent CA", s.tenantCAs, certs.ExpiryOptions{Now: s.cfg.Now, Logger: s.log})
	if err != nil {
		return err
	}
	s.wg.Go(func() { bundles.Run(ctx) })
	if err := s.certs.Run(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}

// challengeHandler answers ACME HTTP-01 challenges and redirects all else
// to https; nothing is proxied.
func (s *Server) challengeHandler() http.Handler {
	if a := s.acmeSource(); a != nil {
		return a.HTTPHandler(nil)
	}
	var hosts []string
	if leaf := s.servingLeaf(); leaf != nil {
		hosts = leaf.DNSNames
	}
	return certs.RedirectHTTPS(hosts)
}

// certReady reports whether a certificate is there to serve.
func (s *Server) certReady() error {
	if a := s.acmeSource(); a != nil {
		select {
		case <-a.Ready():
		default:
			return errors.New("waiting for the ACME certificate")
		}
	}
	return nil
}

// isACMEChallenge answers acme-tls/1 hellos with the challenge policy.
func (s *Server) acmeChallengeConfig(hello *tls.ClientHelloInfo) *tls.Config {
	if a := s.acmeSource(); a != nil && certs.IsTLSALPNChallenge(hello) {
		return a.TLSALPNConfig()
	}
	return nil
}

// listenHTTP opens the HTTP-01 / redirect listener when the config has one.
func (s *Server) listenHTTP() (net.Listener, error) {
	if s.cfg.HTTPListener != nil {
		return s.cfg.HTTPListener, nil
	}
	a := s.cfg.TLS.ACME
	if a == nil || !a.challenge("http-01") || a.HTTPListen == "off" {
		return nil, nil
	}
	addr := a.HTTPListen
	if addr == "" {
		addr = ":80"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("tls.acme.http_listen: %w", err)
	}
	return ln, nil
}

// tenantCAs are the CA certificates of every tenant's bundle in force.
func (s *Server) tenantCAs() []*x509.Certificate {
	var out []*x509.Certificate
	for _, t := range s.tenantList() {
		if st := t.state.Load(); st != nil {
			out = append(out, st.cas...)
		}
	}
	return out
}
