package certstest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"go.uber.org/goleak"

	"github.com/sekisho/sekisho/certs"
)

// PebbleOptions configures StartPebble. The zero value means the defaults.
type PebbleOptions struct {
	// Zone is the DNS zone whose names resolve to 127.0.0.1 for Pebble's
	// validation authority; default "sekisho.test".
	Zone string
	// Profiles maps ACME profile names to certificate lifetimes; default
	// {"default": 24h}. Pebble gives an order that names no profile a
	// random one, so with several profiles the client should name one.
	Profiles map[string]time.Duration
}

// Pebble is Let's Encrypt's test ACME server, run in-process on loopback
// with real challenge validation: its validation authority resolves names
// through an in-test DNS server (every name under Zone is 127.0.0.1) and
// connects to two relay ports of its own, which forward to the HTTP-01 and
// TLS-ALPN-01 listeners the test names with SetHTTP01Target and
// SetTLSALPN01Target. Random validation sleeps, nonce rejections and
// authorization reuse are off. Its issuing root is new at every start:
// fetch it with IssuerRoots.
//
// StartPebble sets Pebble's environment variables with tb.Setenv, so tests
// that use it cannot run in parallel.
type Pebble struct {
	// DirectoryURL is the ACME directory.
	DirectoryURL string
	// TLSRoots trusts Pebble's own HTTPS listeners: the ACME client's
	// trusted roots. TLSRootPEM is the same root as PEM, for config files.
	TLSRoots   *x509.CertPool
	TLSRootPEM []byte
	// DNSAddr is the resolver the validation authority uses (UDP and TCP).
	DNSAddr string

	mgmtURL           string
	http01, tlsalpn01 *relay
	logs              *logBuffer
}

// StartPebble starts Pebble and stops it when the test ends.
func StartPebble(tb testing.TB, opts PebbleOptions) *Pebble {
	tb.Helper()
	if opts.Zone == "" {
		opts.Zone = "sekisho.test"
	}
	if len(opts.Profiles) == 0 {
		opts.Profiles = map[string]time.Duration{"default": 24 * time.Hour}
	}
	for k, v := range map[string]string{
		"PEBBLE_VA_NOSLEEP":          "1",
		"PEBBLE_VA_ALWAYS_VALID":     "0", // real validation, always
		"PEBBLE_WFE_NONCEREJECT":     "0",
		"PEBBLE_AUTHZREUSE":          "0",
		"PEBBLE_VA_SLEEPTIME":        "",
		"PEBBLE_ALTERNATE_ROOTS":     "",
		"PEBBLE_CHAIN_LENGTH":        "",
		"PEBBLE_WFE_ORDERS_PER_PAGE": "",
	} {
		tb.Setenv(k, v)
	}
	p := &Pebble{logs: &logBuffer{}}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("pebble log (tail):\n%s", p.logs.String())
		}
	})
	p.DNSAddr = startDNS(tb, opts.Zone)
	p.http01 = startRelay(tb)
	p.tlsalpn01 = startRelay(tb)

	logger := log.New(p.logs, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	profiles := make(map[string]ca.Profile, len(opts.Profiles))
	for name, life := range opts.Profiles {
		profiles[name] = ca.Profile{Description: name, ValidityPeriod: uint64(life / time.Second)}
	}
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, profiles)
	validator := va.New(logger, p.http01.port(), p.tlsalpn01.port(), false, p.DNSAddr, store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	srv := NewServer(tb)
	p.TLSRoots, p.TLSRootPEM = srv.Roots, certs.EncodeCert(srv.CA.Cert.Raw)
	p.DirectoryURL = serveTLS(tb, front.Handler(), srv.Cert, logger) + wfe.DirectoryPath
	p.mgmtURL = serveTLS(tb, front.ManagementHandler(), srv.Cert, logger)
	return p
}

func serveTLS(tb testing.TB, h http.Handler, cert tls.Certificate, logger *log.Logger) string {
	s := httptest.NewUnstartedServer(h)
	s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.Config.ErrorLog = logger
	s.StartTLS()
	tb.Cleanup(s.Close)
	return s.URL
}

// SetHTTP01Target sends the validation authority's HTTP-01 connections to
// addr (host:port), the test's port-80 listener.
func (p *Pebble) SetHTTP01Target(addr string) { p.http01.setTarget(addr) }

// SetTLSALPN01Target sends the validation authority's TLS-ALPN-01
// connections to addr (host:port), the test's port-443 listener.
func (p *Pebble) SetTLSALPN01Target(addr string) { p.tlsalpn01.setTarget(addr) }

// HTTP01Connections counts the connections the validation authority made
// for HTTP-01 challenges (Pebble validates each challenge from three
// perspectives, so three per challenge).
func (p *Pebble) HTTP01Connections() int { return int(p.http01.count.Load()) }

// TLSALPN01Connections is the same for TLS-ALPN-01.
func (p *Pebble) TLSALPN01Connections() int { return int(p.tlsalpn01.count.Load()) }

// IssuerRoots fetches the root Pebble issues under from its management
// endpoint (/roots/0): what clients of the issued certificates trust.
func (p *Pebble) IssuerRoots(tb testing.TB) *x509.CertPool {
	tb.Helper()
	roots, err := certs.ParseCerts(p.IssuerRootPEM(tb))
	if err != nil {
		tb.Fatalf("certstest: pebble root: %v", err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	return pool
}

// IssuerRootPEM is IssuerRoots as PEM, for config files.
func (p *Pebble) IssuerRootPEM(tb testing.TB) []byte {
	tb.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.TLSRoots}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.mgmtURL+wfe.RootCertPath+"0", nil)
	if err != nil {
		tb.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		tb.Fatalf("certstest: fetch pebble root: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("certstest: fetch pebble root: status %d, %v", resp.StatusCode, err)
	}
	return body
}

// Logs returns the tail of Pebble's log.
func (p *Pebble) Logs() string { return p.logs.String() }

// IgnoreLibraryGoroutines lists, for goleak, the goroutines that Pebble
// and certmagic start and that no API of theirs stops or joins: Pebble's
// validation task loop and certmagic's rate limiter per CA and account
// (both live as long as the process), and certmagic's lock-file refresher,
// which ends by itself within 5s of the lock's release.
func IgnoreLibraryGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}

// logBuffer keeps the last 256 KiB written to it.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const logBufferMax = 256 << 10

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - logBufferMax; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
