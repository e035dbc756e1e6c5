package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeGateway is a TLS server that requires the tenant's client
// certificates and counts devices, connections and requests.
type fakeGateway struct {
	addr     string
	roots    *x509.CertPool
	conns    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	devices  map[string]bool
	protos   map[int]bool // HTTP major versions seen
}

// gatewayPKI is a tenant CA to mint agents from, and a server
// certificate in the TLS config of a gateway that requires the tenant's
// client certificates.
func gatewayPKI(t *testing.T) (*certs.CA, *certstest.Server, *tls.Config) {
	ca := certstest.CA(t, "acme")
	srv := certstest.NewServer(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return ca, srv, &tls.Config{Certificates: []tls.Certificate{srv.Cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
}

func TestRunTCP(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		ca, srv, conf := gatewayPKI(t)
		g := &fakeGateway{roots: srv.Roots, devices: map[string]bool{}, protos: map[int]bool{}}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p, err := auth.PrincipalOf(r.TLS.PeerCertificates[0])
				if err != nil {
					http.Error(w, "no identity", 403)
					return
				}
				g.requests.Add(1)
				g.mu.Lock()
				g.devices[p.DeviceID] = true
				g.protos[r.ProtoMajor] = true
				g.mu.Unlock()
				if r.URL.Path == "/busy" {
					w.Header().Set("Retry-After", "1")
					http.Error(w, "over budget", 503)
					return
				}
				w.Write(make([]byte, 100))
			}),
			TLSConfig: conf,
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					g.conns.Add(1)
				}
			},
		}
		go hs.ServeTLS(ln, "", "")
		sum, err := Run(context.Background(), Config{
			Target: ln.Addr().String(), ServerName: "localhost", RootCAs: srv.Roots, CA: ca, HTTP2: h2,
			Agents: 40, ConnectRate: 400, Duration: 500 * time.Millisecond, RequestRate: 400,
			PayloadFraction: 0.25, PayloadPath: "/busy",
		})
		hs.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sum.Connected != 40 || sum.ConnectFailed != 0 {
			t.Fatalf("h2=%v: connected %d, failed %d (%v)", h2, sum.Connected, sum.ConnectFailed, sum.FirstErrors)
		}
		// One connection and one certificate per agent.
		if n := g.conns.Load(); n != 40 {
			t.Errorf("h2=%v: the server saw %d connections, want 40", h2, n)
		}
		if wantMajor := map[bool]int{false: 1, true: 2}[h2]; len(g.protos) != 1 || !g.protos[wantMajor] {
			t.Errorf("h2=%v: the server saw HTTP versions %v, want only %d", h2, g.protos, wantMajor)
		}
		if len(g.devices) != 40 {
			t.Errorf("h2=%v: the server saw %d devices, want 40", h2, len(g.devices))
		}
		if sum.Requests < 50 || sum.Failed != 0 || sum.Deferred == 0 {
			t.Errorf("h2=%v: requests %d failed %d deferred %d; want some of each but failures", h2, sum.Requests, sum.Failed, sum.Deferred)
		}
		if sum.P50ms <= 0 || sum.P99ms < sum.P50ms || sum.ConnectRate <= 0 {
			t.Errorf("h2=%v: odd summary %+v", h2, sum)
		}
	}
}

func TestConnectFailuresClassified(t *testing.T) {
	ca := certstest.CA(t, "acme")
	srv := certstest.NewServer(t)
	other := certstest.NewServer(t) // the agents will not trust this one
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{other.Cert}},
		ErrorLog: log.New(io.Discard, "", 0)}
	go hs.ServeTLS(ln, "", "")
	defer hs.Close()
	sum, err := Run(context.Background(), Config{
		Target: ln.Addr().String(), ServerName: "localhost", RootCAs: srv.Roots, CA: ca,
		Agents: 5, Duration: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Connected != 0 || sum.ConnectFailed != 5 || sum.Errors["connect_tls"] != 5 {
		t.Fatalf("summary %+v", sum)
	}
}

func TestSourceIPsSpread(t *testing.T) {
	f := &fleet{cfg: Config{Target: "127.0.0.1:443", SourceIPs: 3}.withDefaults()}
	f.cfg.SourceIPs = 3
	seen := map[string]bool{}
	for i := range 9 {
		seen[f.sourceIP(i).String()] = true
	}
	if len(seen) != 3 || !seen["127.0.0.2"] || !seen["127.0.0.4"] {
		t.Fatalf("source addresses %v", seen)
	}
	remote := &fleet{cfg: Config{Target: "192.0.2.1:443", SourceIPs: 3}}
	if remote.sourceIP(1) != nil {
		t.Fatal("a non-loopback target got a loopback source address")
	}
}

// A TCP agent needs a file of its own; QUIC agents share a socket per
// AgentsPerSocket, so 100,000 of them fit one process's limit.
func TestFilesNeeded(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want uint64
	}{
		{Config{Agents: 19000}, 19064},
		{Config{Agents: 20000, Transport: "quic"}, 5 + 64},
		{Config{Agents: 20001, Transport: "quic"}, 6 + 64},
		{Config{Agents: 100, Transport: "quic", AgentsPerSocket: 10}, 10 + 64},
	} {
		if got := tt.cfg.FilesNeeded(); got != tt.want {
			t.Errorf("%+v: %d files, want %d", tt.cfg, got, tt.want)
		}
	}
}
