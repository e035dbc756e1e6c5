package certs_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

func TestIsTLSALPNChallenge(t *testing.T) {
	for _, tt := range []struct {
		name   string
		server string
		protos []string
		want   bool
	}{
		{"challenge", "gw.example", []string{"acme-tls/1"}, true},
		{"no server name", "", []string{"acme-tls/1"}, false},
		{"offered among others", "gw.example", []string{"h2", "acme-tls/1"}, false},
		{"agent", "gw.example", []string{"h2", "http/1.1"}, false},
		{"no ALPN", "gw.example", nil, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hello := &tls.ClientHelloInfo{ServerName: tt.server, SupportedProtos: tt.protos}
			if got := certs.IsTLSALPNChallenge(hello); got != tt.want {
				t.Errorf("IsTLSALPNChallenge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRedirectHTTPS(t *testing.T) {
	h := certs.RedirectHTTPS([]string{"gw.example", "alt.example"})
	for _, tt := range []struct {
		name, method, target, host, want string
	}{
		{"same host, path and query kept", http.MethodGet, "/core/api?x=1&y=2", "gw.example", "https://gw.example/core/api?x=1&y=2"},
		{"port dropped", http.MethodGet, "/", "alt.example:80", "https://alt.example/"},
		{"host case folded", http.MethodHead, "/a", "GW.Example", "https://gw.example/a"},
		{"foreign host goes to the main name", http.MethodGet, "/a", "evil.example", "https://gw.example/a"},
		{"IP literal goes to the main name", http.MethodPost, "/enroll", "192.0.2.7:80", "https://gw.example/enroll"},
		{"escaped path kept", http.MethodGet, "/a%2Fb", "gw.example", "https://gw.example/a%2Fb"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.Host = tt.host
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusPermanentRedirect {
				t.Errorf("status %d, want 308", rec.Code)
			}
			if got := rec.Header().Get("Location"); got != tt.want {
				t.Errorf("Location %q, want %q", got, tt.want)
			}
		})
	}
}

// Before Run, and for anything but a live challenge, the HTTP-01 handler
// answers 404 under the challenge path and redirects the rest.
func TestACMEHTTPHandlerOutsideChallenges(t *testing.T) {
	src, err := certs.NewACMESource(certs.ACMEOptions{Domains: []string{"gw.example"}, StorageDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		fallback http.Handler
		target   string
		want     int
	}{
		{"no challenge in progress", nil, "/.well-known/acme-challenge/abc", http.StatusNotFound},
		{"everything else redirected", nil, "/", http.StatusPermanentRedirect},
		{"custom fallback", http.NotFoundHandler(), "/", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			src.HTTPHandler(tt.fallback).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://gw.example"+tt.target, nil))
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
	if _, err := src.GetCertificate(&tls.ClientHelloInfo{ServerName: "gw.example"}); !errors.Is(err, certs.ErrNotReady) {
		t.Errorf("GetCertificate before Run: %v, want ErrNotReady", err)
	}
	if src.Leaf() != nil {
		t.Error("Leaf before Run is not nil")
	}
}

func TestNewACMESourceRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		opts certs.ACMEOptions
	}{
		{"no domain", certs.ACMEOptions{StorageDir: dir}},
		{"wildcard", certs.ACMEOptions{Domains: []string{"*.example.com"}, StorageDir: dir}},
		{"bad name", certs.ACMEOptions{Domains: []string{"a b"}, StorageDir: dir}},
		{"no storage", certs.ACMEOptions{Domains: []string{"gw.example"}}},
		{"no challenge", certs.ACMEOptions{Domains: []string{"gw.example"}, StorageDir: dir, DisableHTTP01: true, DisableTLSALPN01: true}},
		{"ratio", certs.ACMEOptions{Domains: []string{"gw.example"}, StorageDir: dir, RenewalWindowRatio: 1}},
		{"roots file", certs.ACMEOptions{Domains: []string{"gw.example"}, StorageDir: dir, TrustedRootsFile: dir + "/missing.pem"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := certs.NewACMESource(tt.opts); err == nil {
				t.Error("accepted")
			}
		})
	}
	src, err := certs.NewACMESource(certs.ACMEOptions{Domains: []string{"gw.example"}, StorageDir: dir, DisableTLSALPN01: true})
	if err != nil {
		t.Fatal(err)
	}
	if src.TLSALPNConfig() != nil {
		t.Error("TLSALPNConfig is not nil with TLS-ALPN-01 disabled")
	}
}

func TestStaticSource(t *testing.T) {
	srv := certstest.NewServer(t)
	cert := srv.Cert
	cert.Leaf = nil
	src, err := certs.NewStaticSource(cert)
	if err != nil {
		t.Fatal(err)
	}
	if src.Leaf() == nil || src.Leaf().SerialNumber.Cmp(srv.Cert.Leaf.SerialNumber) != 0 {
		t.Error("Leaf is not the certificate's")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := src.Run(ctx); err != nil {
		t.Error(err)
	}
	if _, err := certs.NewStaticSource(tls.Certificate{}); err == nil {
		t.Error("empty certificate accepted")
	}
}
