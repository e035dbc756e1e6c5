package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// LetsEncrypt is the ACME directory of Let's Encrypt's production CA, the
// default of ACMEOptions.CA.
const LetsEncrypt = certmagic.LetsEncryptProductionCA

// ACMEOptions configures an ACMESource. The zero value of each field means
// the documented default; Domains and StorageDir are required.
type ACMEOptions struct {
	// Domains are the names to hold certificates for, one certificate
	// each; the first is the main name, served to clients that send no
	// server name or one that matches no certificate. Wildcards are not
	// supported (they need DNS-01).
	Domains []string
	// CA is the ACME directory URL; default LetsEncrypt (production).
	CA string
	// Email is the ACME account contact; optional. Without one, the
	// account is registered with no contact.
	Email string
	// StorageDir holds the ACME account, keys and certificates. Replicas
	// of the gateway may share it (on a shared file system): they then
	// share one account and certificate, take turns to renew it, and each
	// answers challenges started by another.
	StorageDir string
	// TrustedRoots and TrustedRootsFile (PEM) are the roots trusted for
	// the ACME server's own HTTPS, for a private CA (step-ca, Pebble);
	// default the system roots. When both are set, both are trusted.
	TrustedRoots     *x509.CertPool
	TrustedRootsFile string
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off; at
	// least one must stay on.
	DisableHTTP01    bool
	DisableTLSALPN01 bool
	// HTTPPort is the port the gateway's HTTP-01 listener is bound to (the
	// one the CA's port 80 reaches); default 80. If nothing listens there
	// when a challenge starts, certmagic listens on it for the challenge.
	HTTPPort int
	// TLSALPNPort is the same for the TLS listener that routes acme-tls/1
	// (the CA connects to port 443); default 443.
	TLSALPNPort int
	// Profile names an ACME certificate profile offered by the CA (Let's
	// Encrypt: "classic", "tlsserver", "shortlived"); default none, the
	// CA's default.
	Profile string
	// RenewalWindowRatio is the fraction of a certificate's lifetime,
	// counted back from its expiry, in which it is renewed; default 1/3.
	// ACME Renewal Information from the CA may bring renewal forward.
	RenewalWindowRatio float64
	// RenewCheckInterval is how often certificates are checked for
	// renewal; default 10 minutes.
	RenewCheckInterval time.Duration
	// Logger receives certmagic's logs; default zap.NewNop().
	Logger *zap.Logger
}

// ACMESource obtains and renews the gateway's certificates from an ACME CA
// with certmagic (its own cache and config: no package-level state),
// staples OCSP responses when the CA offers them, and answers HTTP-01
// (HTTPHandler) and TLS-ALPN-01 (TLSALPNConfig) challenges.
//
// NewACMESource starts nothing. Run obtains the certificates (or loads
// them from storage), closes Ready, then keeps them renewed until its
// context ends. The HTTP-01 handler and the acme-tls/1 route must be
// reachable before Run starts: the first certificate is validated through
// them.
type ACMESource struct {
	opts    ACMEOptions
	roots   *x509.CertPool
	log     *zap.Logger
	ready   chan struct{}
	started atomic.Bool
	state   atomic.Pointer[acmeState]
	alpn    *tls.Config
}

// acmeState is what Run builds: certmagic's cache, config and issuer.
type acmeState struct {
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	flight flight
}

// shutdownWait bounds how long Run waits, once its context has ended, for
// an issuance that certmagic's maintenance started to give up.
const shutdownWait = 5 * time.Second

// NewACMESource checks opts and returns a source that is not running.
func NewACMESource(opts ACMEOptions) (*ACMESource, error) {
	if err := opts.fill(); err != nil {
		return nil, err
	}
	s := &ACMESource{opts: opts, log: opts.Logger, ready: make(chan struct{})}
	if opts.TrustedRoots != nil || opts.TrustedRootsFile != "" {
		roots, err := opts.rootPool()
		if err != nil {
			return nil, err
		}
		s.roots = roots
	}
	if !opts.DisableTLSALPN01 {
		s.alpn = &tls.Config{
			// RFC 8737 asks for TLS 1.2 or later; nothing but the
			// challenge certificate is exchanged on these connections.
			MinVersion:     tls.VersionTLS12,
			NextProtos:     []string{ACMETLSALPN},
			GetCertificate: s.challengeCertificate,
		}
	}
	return s, nil
}

func (o *ACMEOptions) fill() error {
	if len(o.Domains) == 0 {
		return errors.New("acme: Domains: at least one name required")
	}
	o.Domains = append([]string(nil), o.Domains...)
	for i, d := range o.Domains {
		d = strings.ToLower(strings.TrimSpace(d))
		if strings.Contains(d, "*") || !certmagic.SubjectQualifiesForCert(d) {
			return fmt.Errorf("acme: Domains: %q does not qualify for an ACME certificate (wildcards need DNS-01, unsupported)", o.Domains[i])
		}
		o.Domains[i] = d
	}
	if o.StorageDir == "" {
		return errors.New("acme: StorageDir: required")
	}
	if o.DisableHTTP01 && o.DisableTLSALPN01 {
		return errors.New("acme: DisableHTTP01 and DisableTLSALPN01: at least one challenge must stay enabled")
	}
	if o.CA == "" {
		o.CA = LetsEncrypt
	}
	if o.HTTPPort < 0 || o.HTTPPort > 65535 || o.TLSALPNPort < 0 || o.TLSALPNPort > 65535 {
		return fmt.Errorf("acme: HTTPPort %d or TLSALPNPort %d: out of range", o.HTTPPort, o.TLSALPNPort)
	}
	if o.RenewalWindowRatio < 0 || o.RenewalWindowRatio >= 1 {
		return fmt.Errorf("acme: RenewalWindowRatio: %v not in [0, 1)", o.RenewalWindowRatio)
	}
	if o.RenewCheckInterval < 0 {
		return fmt.Errorf("acme: RenewCheckInterval: negative (%v)", o.RenewCheckInterval)
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	return nil
}

func (o *ACMEOptions) rootPool() (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if o.TrustedRoots != nil {
		pool = o.TrustedRoots.Clone()
	}
	if o.TrustedRootsFile != "" {
		roots, err := LoadCerts(o.TrustedRootsFile)
		if err != nil {
			return nil, fmt.Errorf("acme: TrustedRootsFile: %w", err)
		}
		for _, r := range roots {
			pool.AddCert(r)
		}
	}
	return pool, nil
}

// Ready is closed once a certificate for every domain is in service.
func (s *ACMESource) Ready() <-chan struct{} { return s.ready }

// Run builds certmagic's cache, obtains a certificate for each domain (or
// loads it from storage, renewing it if due) and closes Ready; it then
// keeps the certificates renewed and their OCSP staples fresh until ctx
// ends, and stops certmagic's maintenance before it returns. It fails when
// a domain has no usable certificate and none can be obtained now; a due
// renewal that fails while the stored certificate is still valid is only
// logged and retried in the background. Run may be called once.
func (s *ACMESource) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("acme: Run called twice")
	}
	st := s.newState()
	defer s.stop(st)
	s.state.Store(st)
	for _, d := range s.opts.Domains {
		if err := st.cfg.ManageSync(ctx, []string{d}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if s.usable(st, d) {
				s.log.Error("renewing certificate at start failed; serving the stored one and retrying in the background",
					zap.String("domain", d), zap.Error(err))
				continue
			}
			return fmt.Errorf("acme: certificate for %s: %w", d, err)
		}
	}
	close(s.ready)
	if l := s.Leaf(); l != nil {
		s.log.Info("certificate ready", certFields(l)...)
	}
	<-ctx.Done()
	return nil
}

// stop ends certmagic's maintenance and waits (a little) for an issuance
// it started in the background: certmagic's workers are not ours to join.
func (s *ACMESource) stop(st *acmeState) {
	idle := st.flight.close()
	st.cache.Stop()
	select {
	case <-idle:
	case <-time.After(shutdownWait):
		s.log.Warn("certificate issuance still running at shutdown")
	}
}

// newState builds certmagic's cache, config and ACME issuer.
func (s *ACMESource) newState() *acmeState {
	o := s.opts
	st := &acmeState{}
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: o.RenewCheckInterval,
		Logger:             s.log,
	})
	cfg = certmagic.New(cache, certmagic.Config{
		RenewalWindowRatio: o.RenewalWindowRatio,
		Storage:            &certmagic.FileStorage{Path: o.StorageDir},
		DefaultServerName:  o.Domains[0],
		FallbackServerName: o.Domains[0],
		OnEvent:            st.flight.onEvent,
		ShouldEmitFunc:     issuanceEvent,
		Logger:             s.log,
	})
	issuer := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      o.CA,
		Email:                   o.Email,
		Agreed:                  true,
		Profile:                 o.Profile,
		DisableHTTPChallenge:    o.DisableHTTP01,
		DisableTLSALPNChallenge: o.DisableTLSALPN01,
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSALPNPort,
		TrustedRoots:            s.roots,
		Logger:                  s.log,
	})
	cfg.Issuers = []certmagic.Issuer{acmeIssuer{issuer}}
	st.cache, st.cfg, st.issuer = cache, cfg, issuer
	return st
}

// acmeIssuer is certmagic's ACMEIssuer with two behaviours changed:
//   - its pre-check never prompts: without an email, certmagic asks for
//     one on stdin when it obtains interactively (ManageSync);
//   - it hides the concrete *ACMEIssuer type, which is what makes
//     certmagic (v0.25) mark renewal orders as ARI replacements whenever
//     the CA is unchanged, even when the account is not the one the
//     certificate was issued to (Email edited, replicas with different
//     emails); the CA then refuses every renewal ("requester account did
//     not request the certificate being replaced"). Renewal timing from
//     ARI is kept: GetRenewalInfo is promoted.
type acmeIssuer struct{ *certmagic.ACMEIssuer }

func (a acmeIssuer) PreCheck(ctx context.Context, names []string, _ bool) error {
	return a.ACMEIssuer.PreCheck(ctx, names, false)
}

// usable reports whether a certificate for domain is cached and valid now.
func (s *ACMESource) usable(st *acmeState, domain string) bool {
	now := time.Now()
	for _, c := range st.cache.AllMatchingCertificates(domain) {
		if c.Leaf != nil && now.After(c.Leaf.NotBefore) && now.Before(c.Leaf.NotAfter) {
			return true
		}
	}
	return false
}

// GetCertificate serves the certificate for the hello's server name (the
// main name's when it names none or an unknown one). It never answers an
// acme-tls/1 challenge: route those to TLSALPNConfig.
func (s *ACMESource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.state.Load()
	if st == nil {
		return nil, ErrNotReady
	}
	if IsTLSALPNChallenge(hello) {
		return nil, errors.New("acme: acme-tls/1 handshake on the serving configuration; route it to TLSALPNConfig")
	}
	return st.cfg.GetCertificate(hello)
}

// Leaf returns the certificate served for the main name (the one that
// expires last, when a renewal briefly leaves two), or nil before Run has
// one.
func (s *ACMESource) Leaf() *x509.Certificate {
	st := s.state.Load()
	if st == nil {
		return nil
	}
	var best *x509.Certificate
	for _, c := range st.cache.AllMatchingCertificates(s.opts.Domains[0]) {
		if c.Leaf != nil && (best == nil || c.Leaf.NotAfter.After(best.NotAfter)) {
			best = c.Leaf
		}
	}
	return best
}

// TLSALPNConfig returns the TLS configuration that answers TLS-ALPN-01
// challenges, or nil when they are disabled. Return it from
// GetConfigForClient for hellos where IsTLSALPNChallenge is true; it
// requests no client certificate and serves only challenge certificates,
// so the connection must be closed once the handshake is done. Do not
// modify it.
func (s *ACMESource) TLSALPNConfig() *tls.Config { return s.alpn }

func (s *ACMESource) challengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	st := s.state.Load()
	if st == nil || !IsTLSALPNChallenge(hello) {
		return nil, errors.New("acme: no TLS-ALPN challenge in progress")
	}
	return st.cfg.GetCertificate(hello)
}

// HTTPHandler returns the handler of the gateway's plain-HTTP listener
// (port 80): it answers ACME HTTP-01 challenges, started by this replica
// or by another sharing StorageDir, 404s any other request under
// /.well-known/acme-challenge/, and hands everything else to fallback;
// nil means RedirectHTTPS(Domains): 308 to https on the same host.
func (s *ACMESource) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = RedirectHTTPS(s.opts.Domains)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			fallback.ServeHTTP(w, r)
			return
		}
		if st := s.state.Load(); st != nil && st.issuer.HandleHTTPChallenge(w, r) {
			return
		}
		http.NotFound(w, r)
	})
}
