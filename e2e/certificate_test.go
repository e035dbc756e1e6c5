package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/certs/certstest"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
)

// certGateway runs a gateway whose certificate comes from cfg.TLS (ACME or
// files), with one tenant, a core and a connector that trusts roots.
type certGateway struct {
	gw      *gateway.Server
	addr    string
	logs    *observer.ObservedLogs
	tenant  *tenantSpec
	conn    *conn
	domain  string
	httpLn  net.Listener
	tunnels func() int
}

func startCertGateway(t *testing.T, domain string, mod func(*gateway.Config, net.Listener, net.Listener)) *certGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acme := newTenant(t, "acme")
	core, logs := observer.New(zap.DebugLevel)
	cfg := gateway.Config{Listener: ln, HTTPListener: httpLn, Logger: zap.New(core),
		Tenants: []gateway.TenantConfig{{Name: "acme", ConnectorPins: []auth.Pin{acme.pin}}}}
	mod(&cfg, ln, httpLn)
	gw, err := gateway.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &certGateway{gw: gw, addr: ln.Addr().String(), logs: logs, tenant: acme, domain: domain, httpLn: httpLn}
}

// connect starts the core and a connector that verifies the gateway with
// roots and the domain.
func (g *certGateway) connect(t *testing.T, roots *x509.CertPool) {
	core := startCore(t, echoHeaders)
	w := &world{t: t, addr: g.addr}
	g.conn = w.startConnector(t, g.tenant, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Gateways = []connector.GatewayConfig{{Address: g.addr, ServerName: g.domain, RootCAs: roots}}
		})
	waitFor(t, "the connector's sessions", func() bool { return g.conn.c.Sessions() == 2 })
}

// agentGet makes an agent request trusting roots, returning the status and
// the certificate the gateway served.
func (g *certGateway) agentGet(t *testing.T, roots *x509.CertPool) (int, *x509.Certificate) {
	t.Helper()
	cert := certstest.Agent(t, g.tenant.ca, "pc-1")
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: g.domain,
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: hangGuard}).Get("https://" + g.addr + "/api/policy")
	if err != nil {
		t.Fatalf("agent request: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.TLS.PeerCertificates[0]
}

// sessionsDropped counts connector sessions the gateway saw end.
func (g *certGateway) sessionsDropped() int {
	return g.logs.FilterMessage("connector session down").Len()
}

// TestGatewayACME: the gateway gets its certificate from a real ACME CA
// (Pebble, real validation), once through HTTP-01 alone and once through
// TLS-ALPN-01 alone on the agent port, then connectors and agents use it.
func TestGatewayACME(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			p := certstest.StartPebble(t, certstest.PebbleOptions{})
			domain := "gw-" + challenge + ".sekisho.test"
			g := startCertGateway(t, domain, func(c *gateway.Config, ln, httpLn net.Listener) {
				c.TLS.ACME = &gateway.ACMEConfig{Domains: []string{domain}, CA: p.DirectoryURL, TrustedRoots: p.TLSRoots,
					Storage: t.TempDir(), Challenges: []string{challenge},
					HTTPPort: httpLn.Addr().(*net.TCPAddr).Port, TLSALPNPort: ln.Addr().(*net.TCPAddr).Port}
				p.SetHTTP01Target(httpLn.Addr().String())
				p.SetTLSALPN01Target(ln.Addr().String())
			})
			waitFor(t, "the ACME certificate", func() bool { return g.gw.Ready() == nil || isOnlyTenantWait(g.gw.Ready()) })
			roots := p.IssuerRoots(t)
			g.connect(t, roots)
			code, leaf := g.agentGet(t, roots)
			if code != 200 || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain {
				t.Fatalf("agent got %d with a certificate for %v", code, leaf.DNSNames)
			}
			httpConns, alpnConns := p.HTTP01Connections(), p.TLSALPN01Connections()
			t.Logf("validated with real challenges: http-01 connections %d, tls-alpn-01 connections %d", httpConns, alpnConns)
			if (challenge == "http-01") != (httpConns > 0 && alpnConns == 0) {
				t.Fatalf("challenge %s: Pebble connected %d times for http-01, %d for tls-alpn-01", challenge, httpConns, alpnConns)
			}
			// The :80 listener redirects what is not a challenge.
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
				Get("http://" + g.httpLn.Addr().String() + "/api/policy")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") == "" {
				t.Fatalf("plain HTTP got %d %q, want a redirect to https", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

// isOnlyTenantWait: the gateway is not ready only because no connector
// has pushed a snapshot yet, so the certificate is there.
func isOnlyTenantWait(err error) bool {
	return err != nil && err.Error() == "no tenant has a snapshot yet"
}

// TestGatewayACMERenewalKeepsTunnel: a certificate of a few seconds is
// renewed in the background and served, and the connector's tunnel is not
// dropped.
func TestGatewayACMERenewalKeepsTunnel(t *testing.T) {
	p := certstest.StartPebble(t, certstest.PebbleOptions{Profiles: map[string]time.Duration{"shortlived": 6 * time.Second}})
	domain := "renew.sekisho.test"
	g := startCertGateway(t, domain, func(c *gateway.Config, ln, httpLn net.Listener) {
		c.TLS.ACME = &gateway.ACMEConfig{Domains: []string{domain}, CA: p.DirectoryURL, TrustedRoots: p.TLSRoots,
			Storage: t.TempDir(), Challenges: []string{"http-01"}, Profile: "shortlived",
			RenewalWindow: 0.6, RenewCheckInterval: 300 * time.Millisecond,
			HTTPPort: httpLn.Addr().(*net.TCPAddr).Port, TLSALPNPort: ln.Addr().(*net.TCPAddr).Port}
		p.SetHTTP01Target(httpLn.Addr().String())
	})
	waitFor(t, "the ACME certificate", func() bool { return g.gw.Ready() == nil || isOnlyTenantWait(g.gw.Ready()) })
	roots := p.IssuerRoots(t)
	g.connect(t, roots)
	_, first := g.agentGet(t, roots)
	waitFor(t, "a renewed certificate", func() bool {
		_, leaf := g.agentGet(t, roots)
		return leaf.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if n := g.sessionsDropped(); n != 0 {
		t.Fatalf("%d connector sessions dropped during the renewal", n)
	}
	if g.conn.c.Sessions() != 2 {
		t.Fatalf("connector sessions %d after renewal", g.conn.c.Sessions())
	}
}

// TestGatewayCertificateFileReload: new files are served to new handshakes
// without dropping the tunnel; a broken pair is refused, the old
// certificate stays, and the log says why.
func TestGatewayCertificateFileReload(t *testing.T) {
	dir := t.TempDir()
	pub := certstest.CA(t, "public")
	roots := x509.NewCertPool()
	roots.AddCert(pub.Cert)
	writePair := func(name string) *x509.Certificate {
		key, _ := certs.NewKey()
		leaf, err := pub.IssueServer(key.Public(), []string{"files.sekisho.test"}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := certs.EncodeKey(key)
		replace(t, filepath.Join(dir, "gw.key"), kb)
		replace(t, filepath.Join(dir, "gw.pem"), certs.EncodeCert(leaf.Raw))
		return leaf
	}
	first := writePair("first")
	g := startCertGateway(t, "files.sekisho.test", func(c *gateway.Config, _, _ net.Listener) {
		c.TLS.CertFile, c.TLS.KeyFile = filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw.key")
		c.HTTPListener = nil
	})
	g.connect(t, roots)
	if _, leaf := g.agentGet(t, roots); leaf.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatal("not serving the first certificate")
	}
	second := writePair("second")
	if _, err := g.gw.Reload(reloadCfg(g)); err != nil {
		t.Fatal(err)
	}
	if _, leaf := g.agentGet(t, roots); leaf.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatal("not serving the new certificate after reload")
	}
	// A key that does not match the certificate: refused, old one kept.
	other, _ := certs.NewKey()
	kb, _ := certs.EncodeKey(other)
	replace(t, filepath.Join(dir, "gw.key"), kb)
	if _, err := g.gw.Reload(reloadCfg(g)); err != nil {
		t.Fatal(err)
	}
	if _, leaf := g.agentGet(t, roots); leaf.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Fatal("a broken pair replaced the certificate")
	}
	if g.logs.FilterField(zap.String("reason", "key_mismatch")).Len() == 0 {
		t.Fatal("the refusal of the broken pair was not logged with its reason")
	}
	if g.sessionsDropped() != 0 || g.conn.c.Sessions() != 2 {
		t.Fatal("the tunnel was dropped by a certificate reload")
	}
}

// reloadCfg is the running config again, for Reload.
func reloadCfg(g *certGateway) gateway.Config {
	return gateway.Config{TLS: gateway.TLSConfig{CertFile: "unused", KeyFile: "unused"},
		Tenants: []gateway.TenantConfig{{Name: "acme", ConnectorPins: []auth.Pin{g.tenant.pin}}}}
}

// replace writes a file atomically, as operators' tools do.
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
