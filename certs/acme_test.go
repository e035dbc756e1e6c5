package certs_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

// front stands in for the gateway's listeners: plain HTTP with the
// source's HTTP-01 handler, and TLS whose GetConfigForClient routes
// acme-tls/1 to the source's TLSALPNConfig, as the gateway must.
type front struct {
	httpLn, tlsLn net.Listener
	// http01 counts challenge requests answered 200; alpn counts handshakes
	// that completed with the acme-tls/1 protocol.
	http01, alpn atomic.Int64
	wg           sync.WaitGroup
	// broken makes the HTTP listener answer 404 to everything, so that
	// HTTP-01 validation fails.
	broken bool
}

func newFront(t *testing.T) *front {
	t.Helper()
	f := &front{}
	var err error
	if f.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if f.tlsLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	return f
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// serve starts answering with src's handlers until the test ends.
func (f *front) serve(t *testing.T, src *certs.ACMESource) {
	h := src.HTTPHandler(nil)
	if f.broken {
		h = http.NotFoundHandler()
	}
	hs := httptest.NewUnstartedServer(f.count(h))
	hs.Listener.Close()
	hs.Listener = f.httpLn
	hs.Start()
	t.Cleanup(hs.Close)

	serving := certs.ServerConfig(nil)
	serving.GetCertificate = src.GetCertificate
	serving.NextProtos = []string{"h2", "http/1.1"}
	conf := &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c := src.TLSALPNConfig(); c != nil && certs.IsTLSALPNChallenge(hello) {
			return c, nil
		}
		return serving, nil
	}}
	f.wg.Add(1)
	go f.acceptTLS(conf)
	t.Cleanup(func() {
		f.tlsLn.Close()
		f.wg.Wait()
	})
}

func (f *front) count(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") && rec.code == http.StatusOK {
			f.http01.Add(1)
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (f *front) acceptTLS(conf *tls.Config) {
	defer f.wg.Done()
	for {
		c, err := f.tlsLn.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			tc := tls.Server(c, conf)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.HandshakeContext(ctx) == nil && tc.ConnectionState().NegotiatedProtocol == certs.ACMETLSALPN {
				f.alpn.Add(1)
			}
		}()
	}
}

// dialServed handshakes with the front, sending sni (possibly none), and
// returns the leaf it was served after checking it chains to roots for
// name.
func (f *front) dialServed(t *testing.T, sni, name string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	cc := certs.ClientConfig(nil)
	cc.ServerName, cc.NextProtos = sni, []string{"h2"}
	cc.InsecureSkipVerify = true // verified below, for name whatever the SNI
	cc.VerifyConnection = func(cs tls.ConnectionState) error {
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
		return err
	}
	d := &tls.Dialer{Config: cc, NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(context.Background(), "tcp", f.tlsLn.Addr().String())
	if err != nil {
		t.Fatalf("handshake with the served certificate: %v", err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// startACME builds an ACMESource for name against p, behind f, runs it and
// waits until it is ready; it is stopped when the test ends.
func startACME(t *testing.T, p *certstest.Pebble, f *front, opts certs.ACMEOptions) (*certs.ACMESource, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("%s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	opts.CA, opts.TrustedRoots = p.DirectoryURL, p.TLSRoots
	if opts.StorageDir == "" {
		opts.StorageDir = t.TempDir()
	}
	opts.HTTPPort, opts.TLSALPNPort = port(f.httpLn), port(f.tlsLn)
	opts.Logger = zap.New(core)
	src, err := certs.NewACMESource(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.serve(t, src)
	p.SetHTTP01Target(f.httpLn.Addr().String())
	p.SetTLSALPN01Target(f.tlsLn.Addr().String())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-src.Ready():
	case err := <-done:
		done <- err
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no certificate after 30s")
	}
	return src, logs
}

func serialText(c *x509.Certificate) string {
	if c == nil {
		return "none"
	}
	return c.SerialNumber.Text(16)
}

// servedKeyAuth counts certmagic's "served key authentication" logs for a
// challenge type: certmagic's own account of answering the CA.
func servedKeyAuth(logs *observer.ObservedLogs, challenge string) int {
	n := 0
	for _, e := range logs.FilterMessageSnippet("served key authentication").All() {
		if e.ContextMap()["challenge"] == challenge {
			n++
		}
	}
	return n
}

// Pebble validates one challenge type, for real, through the front; a
// client trusting Pebble's issuing root then completes a handshake.
func TestACMEObtains(t *testing.T) {
	for _, tt := range []struct {
		name, domain, challenge string
		opts                    certs.ACMEOptions
	}{
		// First, so that no email is known to certmagic yet: it must
		// register an account without a contact, and never prompt.
		{"TLS-ALPN-01 only, no email", "alpn.sekisho.test", "tls-alpn-01", certs.ACMEOptions{DisableHTTP01: true}},
		{"HTTP-01 only", "http01.sekisho.test", "http-01", certs.ACMEOptions{DisableTLSALPN01: true, Email: "ops@sekisho.test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := certstest.StartPebble(t, certstest.PebbleOptions{})
			f := newFront(t)
			tt.opts.Domains = []string{tt.domain}
			src, logs := startACME(t, p, f, tt.opts)

			roots := p.IssuerRoots(t)
			leaf := f.dialServed(t, tt.domain, tt.domain, roots)
			if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != tt.domain {
				t.Errorf("served certificate for %v, want [%s]", leaf.DNSNames, tt.domain)
			}
			if l := src.Leaf(); l == nil || l.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
				t.Errorf("Leaf serial %s is not the served %s", serialText(l), serialText(leaf))
			}
			// No server name, or an unknown one, gets the main certificate.
			for _, sni := range []string{"", "other.sekisho.test"} {
				if got := f.dialServed(t, sni, tt.domain, roots); got.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
					t.Errorf("SNI %q served another certificate", sni)
				}
			}

			// Which challenge was validated: the CA's connections, our
			// listeners' answers and certmagic's log all agree.
			httpConns, alpnConns := p.HTTP01Connections(), p.TLSALPN01Connections()
			http01, alpn := f.http01.Load(), f.alpn.Load()
			t.Logf("pebble connections: http-01 %d, tls-alpn-01 %d; answered: http-01 %d, acme-tls/1 %d",
				httpConns, alpnConns, http01, alpn)
			switch tt.challenge {
			case "http-01":
				if httpConns == 0 || http01 == 0 || alpnConns != 0 || alpn != 0 {
					t.Error("not validated by HTTP-01 alone")
				}
			case "tls-alpn-01":
				if alpnConns == 0 || alpn == 0 || httpConns != 0 || http01 != 0 {
					t.Error("not validated by TLS-ALPN-01 alone")
				}
			}
			if servedKeyAuth(logs, tt.challenge) == 0 {
				t.Errorf("certmagic logged no %s key authentication", tt.challenge)
			}
		})
	}
}

// With a short-lived profile, certmagic's maintenance renews in the
// background and new handshakes get the new certificate.
func TestACMERenews(t *testing.T) {
	const domain = "renew.sekisho.test"
	p := certstest.StartPebble(t, certstest.PebbleOptions{Profiles: map[string]time.Duration{
		"default": 24 * time.Hour, "shortlived": 4 * time.Second,
	}})
	f := newFront(t)
	src, logs := startACME(t, p, f, certs.ACMEOptions{
		Domains:            []string{domain},
		Email:              "ops@sekisho.test",
		Profile:            "shortlived",
		DisableTLSALPN01:   true,
		RenewalWindowRatio: 0.5,
		RenewCheckInterval: 100 * time.Millisecond,
	})
	roots := p.IssuerRoots(t)
	first := f.dialServed(t, domain, domain, roots)
	if life := first.NotAfter.Sub(first.NotBefore); life > 5*time.Second {
		t.Fatalf("certificate lives %v: not from the short-lived profile", life)
	}
	deadline := time.Now().Add(20 * time.Second)
	for src.Leaf().SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no renewal within 20s")
		}
		time.Sleep(50 * time.Millisecond) // renewal is certmagic's, on the wall clock
	}
	next := f.dialServed(t, domain, domain, roots)
	if next.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("handshake still serves the first certificate")
	}
	if !next.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after %v", next.NotAfter, first.NotAfter)
	}
	if logs.FilterMessage("certificate renewed successfully").Len() == 0 {
		t.Error("certmagic did not log a renewal")
	}
}

// A second replica on the same storage serves the certificate the first
// obtained, without asking the CA.
func TestACMESharedStorage(t *testing.T) {
	const domain = "shared.sekisho.test"
	p := certstest.StartPebble(t, certstest.PebbleOptions{})
	storage := t.TempDir()
	opts := certs.ACMEOptions{Domains: []string{domain}, Email: "ops@sekisho.test", StorageDir: storage, DisableTLSALPN01: true}
	first, _ := startACME(t, p, newFront(t), opts)
	validations := p.HTTP01Connections()
	second, _ := startACME(t, p, newFront(t), opts)
	if a, b := first.Leaf(), second.Leaf(); a == nil || b == nil || a.SerialNumber.Cmp(b.SerialNumber) != 0 {
		t.Errorf("replicas serve serials %s and %s, want the same certificate", serialText(a), serialText(b))
	}
	if n := p.HTTP01Connections(); n != validations {
		t.Errorf("the second replica made the CA validate again (%d connections, then %d)", validations, n)
	}
}

// A replica that finds a stored certificate due for renewal, and cannot
// renew it, still serves it while it is valid.
func TestACMEServesStoredWhenRenewalFails(t *testing.T) {
	const domain = "stored.sekisho.test"
	p := certstest.StartPebble(t, certstest.PebbleOptions{Profiles: map[string]time.Duration{"shortlived": 30 * time.Second}})
	opts := certs.ACMEOptions{Domains: []string{domain}, Email: "ops@sekisho.test", StorageDir: t.TempDir(),
		DisableTLSALPN01: true, Profile: "shortlived", RenewalWindowRatio: 0.99}
	first, _ := startACME(t, p, newFront(t), opts) // renews only at its first check, in 10 minutes
	stored := first.Leaf()
	for !time.Now().After(stored.NotBefore.Add(time.Second)) { // into the renewal window
		time.Sleep(20 * time.Millisecond)
	}
	f := newFront(t)
	f.broken = true
	// Another account: Pebble cannot reuse the first one's authorization,
	// so the renewal must be validated (and fails).
	opts.Email = "ops2@sekisho.test"
	second, logs := startACME(t, p, f, opts)
	if l := second.Leaf(); l == nil || l.SerialNumber.Cmp(stored.SerialNumber) != 0 {
		t.Errorf("serving serial %s, want the stored %s", serialText(l), serialText(stored))
	}
	if logs.FilterMessageSnippet("renewing certificate at start failed").Len() != 1 {
		t.Error("the failed renewal was not logged")
	}
	if f.http01.Load() != 0 || p.HTTP01Connections() <= 3 {
		t.Errorf("renewal not attempted for real: %d validation connections", p.HTTP01Connections())
	}
}

// A replica whose account is not the one the stored certificate was issued
// to (its Email changed) renews it all the same.
func TestACMERenewsAfterAccountChange(t *testing.T) {
	const domain = "moved.sekisho.test"
	p := certstest.StartPebble(t, certstest.PebbleOptions{Profiles: map[string]time.Duration{"shortlived": 30 * time.Second}})
	opts := certs.ACMEOptions{Domains: []string{domain}, Email: "ops@sekisho.test", StorageDir: t.TempDir(),
		DisableTLSALPN01: true, Profile: "shortlived", RenewalWindowRatio: 0.99}
	first, _ := startACME(t, p, newFront(t), opts)
	stored := first.Leaf()
	for !time.Now().After(stored.NotBefore.Add(time.Second)) { // into the renewal window
		time.Sleep(20 * time.Millisecond)
	}
	opts.Email = "new-ops@sekisho.test"
	second, _ := startACME(t, p, newFront(t), opts)
	if l := second.Leaf(); l == nil || l.SerialNumber.Cmp(stored.SerialNumber) == 0 {
		t.Errorf("serving serial %s, want a renewed certificate", serialText(l))
	}
}

// Run fails, naming the domain, when the CA cannot validate it.
func TestACMEFailsWithoutValidation(t *testing.T) {
	p := certstest.StartPebble(t, certstest.PebbleOptions{})
	f := newFront(t)
	opts := certs.ACMEOptions{
		Domains: []string{"nowhere.sekisho.test"}, CA: p.DirectoryURL, TrustedRoots: p.TLSRoots,
		Email: "ops@sekisho.test", StorageDir: t.TempDir(), DisableTLSALPN01: true,
		HTTPPort: port(f.httpLn),
	}
	src, err := certs.NewACMESource(opts)
	if err != nil {
		t.Fatal(err)
	}
	// The front answers 404 to everything: Pebble's validation fails.
	hs := httptest.NewUnstartedServer(http.NotFoundHandler())
	hs.Listener.Close()
	hs.Listener = f.httpLn
	hs.Start()
	defer hs.Close()
	p.SetHTTP01Target(f.httpLn.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = src.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "nowhere.sekisho.test") {
		t.Fatalf("Run: %v, want an error naming the domain", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run timed out instead of failing: %v", err)
	}
	select {
	case <-src.Ready():
		t.Error("Ready closed after a failure")
	default:
	}
}
