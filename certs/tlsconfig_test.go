package certs_test

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

func TestParseCurves(t *testing.T) {
	tests := []struct {
		name  string
		in    []string
		want  []tls.CurveID
		isErr bool
	}{
		{"nil", nil, nil, false},
		{"empty", []string{}, nil, false},
		{"canonical", []string{"X25519MLKEM768", "X25519", "P256", "P384", "P521"},
			[]tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}, false},
		{"lowercase", []string{"x25519mlkem768", "p384"}, []tls.CurveID{tls.X25519MLKEM768, tls.CurveP384}, false},
		{"mixed case", []string{"X25519mlKEM768", "x25519"}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, false},
		{"dashes", []string{"P-256", "p-521", "X25519-MLKEM768", "X-25519-MLKEM-768"},
			[]tls.CurveID{tls.CurveP256, tls.CurveP521, tls.X25519MLKEM768, tls.X25519MLKEM768}, false},
		{"order kept", []string{"P521", "X25519"}, []tls.CurveID{tls.CurveP521, tls.X25519}, false},
		{"unknown", []string{"P224"}, nil, true},
		{"x448", []string{"X448"}, nil, true},
		{"unknown after known", []string{"X25519", "bogus"}, nil, true},
		{"empty name", []string{""}, nil, true},
		{"underscore", []string{"P_256"}, nil, true},
		{"openssl name", []string{"prime256v1"}, nil, true},
		{"space", []string{"P256 "}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certs.ParseCurves(tt.in)
			if tt.isErr {
				if err == nil || got != nil {
					t.Fatalf("ParseCurves(%q) = %v, %v; want nil and an error", tt.in, got, err)
				}
				if bad := tt.in[len(tt.in)-1]; !strings.Contains(err.Error(), `"`+bad+`"`) {
					t.Errorf("error %q does not quote %q", err, bad)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCurves(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) || (tt.want == nil) != (got == nil) {
				t.Errorf("ParseCurves(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestBaseConfigs(t *testing.T) {
	curves := []tls.CurveID{tls.X25519, tls.CurveP256}
	for _, tt := range []struct {
		name string
		new  func([]tls.CurveID) *tls.Config
	}{
		{"server", certs.ServerConfig},
		{"client", certs.ClientConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.new(curves)
			if c.MinVersion != tls.VersionTLS13 {
				t.Errorf("MinVersion = %#x, want TLS 1.3", c.MinVersion)
			}
			if !slices.Equal(c.CurvePreferences, curves) {
				t.Errorf("CurvePreferences = %v, want %v", c.CurvePreferences, curves)
			}
			if c.InsecureSkipVerify {
				t.Error("InsecureSkipVerify is set")
			}
			if d := tt.new(nil); d == c || d.CurvePreferences != nil {
				t.Errorf("configs are shared or keep curves: %p %p %v", c, d, d.CurvePreferences)
			}
		})
	}
}

// handshake runs a TLS handshake over a pipe and returns the client's
// connection state and the two errors.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, server)
	cli := tls.Client(cc, client)
	done := make(chan error, 1)
	go func() {
		err := srv.HandshakeContext(ctx)
		if err != nil {
			sc.Close() // unblock the client
		}
		done <- err
	}()
	cerr := cli.HandshakeContext(ctx)
	if cerr != nil {
		cc.Close() // unblock the server
	}
	serr := <-done
	return cli.ConnectionState(), serr, cerr
}

func TestConfigsHandshake(t *testing.T) {
	srv := certstest.NewServer(t)
	for _, tt := range []struct {
		name      string
		curves    []tls.CurveID // both sides
		clientMax uint16        // caps the client below ClientConfig's minimum
		serverMax uint16        // caps the server below ServerConfig's minimum
		ok        bool
		wantCurve tls.CurveID
	}{
		{"TLS 1.3 with P-256", []tls.CurveID{tls.CurveP256}, 0, 0, true, tls.CurveP256},
		{"TLS 1.3 with X25519", []tls.CurveID{tls.X25519}, 0, 0, true, tls.X25519},
		{"TLS 1.3, Go defaults (hybrid)", nil, 0, 0, true, tls.X25519MLKEM768},
		{"client capped at TLS 1.2", nil, tls.VersionTLS12, 0, false, 0},
		{"server capped at TLS 1.2", nil, 0, tls.VersionTLS12, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := certs.ServerConfig(tt.curves)
			sc.Certificates = []tls.Certificate{srv.Cert}
			cc := certs.ClientConfig(tt.curves)
			cc.RootCAs = srv.Roots
			cc.ServerName = "localhost"
			if tt.clientMax != 0 {
				cc.MinVersion, cc.MaxVersion = tls.VersionTLS12, tt.clientMax
			}
			if tt.serverMax != 0 {
				sc.MinVersion, sc.MaxVersion = tls.VersionTLS12, tt.serverMax
			}
			st, serr, cerr := handshake(t, sc, cc)
			if !tt.ok {
				if serr == nil || cerr == nil {
					t.Fatalf("handshake succeeded (server %v, client %v)", serr, cerr)
				}
				return
			}
			if serr != nil || cerr != nil {
				t.Fatalf("handshake: server %v, client %v", serr, cerr)
			}
			if st.Version != tls.VersionTLS13 {
				t.Errorf("version %#x, want TLS 1.3", st.Version)
			}
			if st.CurveID != tt.wantCurve {
				t.Errorf("curve %v, want %v", st.CurveID, tt.wantCurve)
			}
		})
	}
}
