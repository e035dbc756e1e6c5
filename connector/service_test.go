package connector_test

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/tunnel"
)

// startTLSCore runs the core handler over TLS with a certstest server
// certificate (for 127.0.0.1, ::1 and localhost).
func startTLSCore(t *testing.T) (addr string, srv *certstest.Server) {
	t.Helper()
	srv = certstest.NewServer(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: coreHandler(), ReadHeaderTimeout: hang, ErrorLog: log.New(io.Discard, "", 0)}
	done := make(chan struct{})
	go func() { hs.Serve(ln); close(done) }()
	t.Cleanup(func() { hs.Close(); <-done })
	return ln.Addr().String(), srv
}

func TestServiceTLS(t *testing.T) {
	addr, core := startTLSCore(t)
	other := certstest.NewServer(t) // another CA, another key
	pin := auth.PinOfCert(core.Cert.Leaf)
	wrongPin := auth.PinOfCert(other.Cert.Leaf)
	caFile := filepath.Join(t.TempDir(), "core-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: core.CA.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)

	tests := []struct {
		name string
		addr string
		tls  *connector.ServiceTLS
		want tunnel.Status
	}{
		{"roots", addr, &connector.ServiceTLS{RootCAs: core.Roots}, tunnel.StatusOK},
		{"ca-file", addr, &connector.ServiceTLS{CAFile: caFile}, tunnel.StatusOK},
		{"pin", addr, &connector.ServiceTLS{Pin: &pin}, tunnel.StatusOK},
		{"pin-any-name", addr, &connector.ServiceTLS{Pin: &pin, ServerName: "core.internal"}, tunnel.StatusOK},
		{"server-name", net.JoinHostPort("localhost", port), &connector.ServiceTLS{RootCAs: core.Roots}, tunnel.StatusOK},
		{"wrong-pin", addr, &connector.ServiceTLS{Pin: &wrongPin}, tunnel.StatusUnavailable},
		{"wrong-ca", addr, &connector.ServiceTLS{RootCAs: other.Roots}, tunnel.StatusUnavailable},
		{"system-roots", addr, &connector.ServiceTLS{}, tunnel.StatusUnavailable},
		{"wrong-name", addr, &connector.ServiceTLS{RootCAs: core.Roots, ServerName: "core.internal"}, tunnel.StatusUnavailable},
	}
	g := startFakeGateway(t)
	id := newIdentity(t)
	var svcs []connector.ServiceConfig
	for _, tt := range tests {
		svcs = append(svcs, connector.ServiceConfig{Name: tt.name, PathPrefix: "/" + tt.name, Address: tt.addr, TLS: tt.tls})
	}
	svcs = append(svcs, connector.ServiceConfig{Name: "plain", PathPrefix: "/", Address: closedAddr(t)})
	startConnector(t, g.testConfig(id, nil, svcs...))
	gs := g.next(t)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := relay(gs.sess, tunnel.KindHTTP, tt.name)
			if tt.want != tunnel.StatusOK {
				if err == nil {
					st.Close()
					t.Fatalf("stream to a badly verified service accepted, want %v", tt.want)
				}
				if got := refusal(t, err).Status; got != tt.want {
					t.Fatalf("status = %v, want %v", got, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("relay: %v", err)
			}
			defer st.Close()
			status, body, err := exchange(st, "/"+tt.name)
			if err != nil || status != 200 || body != "core: GET /"+tt.name {
				t.Errorf("exchange over TLS: %d %q %v", status, body, err)
			}
		})
	}
}

func TestServiceTLSCAFileMissing(t *testing.T) {
	g := startFakeGateway(t)
	id := newIdentity(t)
	cfg := g.testConfig(id, nil, connector.ServiceConfig{
		Name: "core", PathPrefix: "/", Address: "127.0.0.1:1",
		TLS: &connector.ServiceTLS{CAFile: filepath.Join(t.TempDir(), "missing.pem")},
	})
	if _, err := connector.New(cfg); err == nil {
		t.Fatal("New accepted a service whose CA file does not exist")
	}
}
