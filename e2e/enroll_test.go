package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/auth/authtest"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/connector"
	"github.com/sekisho/sekisho/gateway"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// clock is a connector clock the test can move.
type clock struct{ offset atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// registryWorld is a gateway and a connector with a device registry and
// the tenant's CA, so devices enroll through the gateway.
type registryWorld struct {
	*world
	acme  *tenantSpec
	conn  *conn
	store auth.Store
	clock *clock
}

func startRegistryWorld(t *testing.T, dsn string, mod func(*connector.Config)) *registryWorld {
	t.Helper()
	acme := newTenant(t, "acme")
	// Every test request comes from 127.0.0.1: lift the per-source limit.
	w := startGateway(t, func(c *gateway.Config) { c.Limits.EnrollPerSource = 100000 }, acme)
	core := startCore(t, echoHeaders)
	rw := &registryWorld{world: w, acme: acme, clock: &clock{}}
	if dsn == "" {
		dsn = authtest.SQLiteDSN(t)
	}
	rw.store = authtest.Open(t, dsn)
	rw.conn = w.startConnector(t, acme, []connector.ServiceConfig{{Name: "core", PathPrefix: "/", Address: core.addr()}},
		func(c *connector.Config) {
			c.Store, c.SigningCA, c.Now = rw.store, acme.ca, rw.clock.now
			if mod != nil {
				mod(c)
			}
		})
	w.waitServed(t, "acme", 2)
	return rw
}

func (rw *registryWorld) token(t *testing.T, req connector.TokenRequest) string {
	t.Helper()
	if req.TTL == 0 {
		req.TTL = time.Hour
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	tok, err := rw.conn.c.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// newCSR makes a key and a CSR for it, with template's names.
func newCSR(t *testing.T, tmpl *x509.CertificateRequest) (crypto.Signer, string) {
	t.Helper()
	key, _ := certs.NewKey()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "PC-0042"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

// enrollCall makes one request on the enrollment ALPN, presenting cert
// when it is set.
func (w *world) enrollCall(t *testing.T, path string, body any, cert *tls.Certificate) (int, tunnel.EnrollBody) {
	t.Helper()
	conf := &tls.Config{RootCAs: w.srv.Roots, ServerName: "localhost", NextProtos: []string{"sekisho-enroll/1"}}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	tr := &http.Transport{TLSClientConfig: conf}
	defer tr.CloseIdleConnections()
	var b []byte
	switch v := body.(type) {
	case []byte:
		b = v
	default:
		b, _ = json.Marshal(v)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: hangGuard}).Post(w.url(path), "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb tunnel.EnrollBody
	json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb
}

// tlsCert turns an issued answer into the agent's TLS certificate.
func tlsCert(t *testing.T, eb tunnel.EnrollBody, key crypto.Signer) tls.Certificate {
	t.Helper()
	chain, err := certs.ParseCerts([]byte(eb.Certificate))
	if err != nil {
		t.Fatalf("issued certificate: %v (%+v)", err, eb)
	}
	return certs.TLSCertificate(chain[0], key)
}

func TestEnrollThroughGateway(t *testing.T) {
	// A catalog key rollover in progress: agents get both public keys.
	oldKey, _ := catalogKey(t)
	newKey, _ := catalogKey(t)
	rw := startRegistryWorld(t, "", func(c *connector.Config) { c.Payloads.Keys = []ed25519.PrivateKey{oldKey, newKey} })
	tok := rw.token(t, connector.TokenRequest{Uses: 2, Groups: []string{"helpdesk"}})
	key, csr := newCSR(t, nil)
	code, eb := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": tok, "csr": csr, "hostname": "PC-0042"}, nil)
	if code != 200 || eb.Status != "issued" || !strings.HasPrefix(eb.DeviceID, "d-") {
		t.Fatalf("enroll: %d %+v", code, eb)
	}
	if len(eb.CatalogKeys) != 2 || eb.CatalogKeys[0].ID != payload.KeyID(oldKey.Public().(ed25519.PublicKey)) ||
		!bytes.Equal(eb.CatalogKeys[1].PublicKey, newKey.Public().(ed25519.PublicKey)) {
		t.Fatalf("enrollment answer catalog keys = %+v, want the two public keys", eb.CatalogKeys)
	}
	cert := tlsCert(t, eb, key)
	p, err := auth.PrincipalOf(cert.Leaf)
	if err != nil || p.Tenant != "acme" || p.DeviceID != eb.DeviceID {
		t.Fatalf("issued certificate names %+v, %v", p, err)
	}
	if life := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); life < 7*24*time.Hour || life > 7*24*time.Hour+10*time.Minute {
		t.Errorf("lifetime %v, want 7 days (+ backdating)", life)
	}
	got := getJSON(t, rw.agent(&cert, true), rw.url("/api/policy"), nil)
	if got["Sekisho-Device-Id"] != eb.DeviceID {
		t.Fatalf("the core saw device %q", got["Sekisho-Device-Id"])
	}
	d, err := rw.store.GetDevice(context.Background(), "acme", eb.DeviceID)
	if err != nil || d.Status != auth.DeviceActive || d.Name != "PC-0042" || len(d.Groups) != 1 {
		t.Fatalf("registry: %+v, %v", d, err)
	}
}

// TestEnrollRefusals: each bad request gets the same generic answer, and
// the precise reason lands in the audit log.
func TestEnrollRefusals(t *testing.T) {
	rw := startRegistryWorld(t, "", nil)
	ctx := context.Background()
	once := rw.token(t, connector.TokenRequest{Uses: 1})
	_, csr := newCSR(t, nil)
	if code, _ := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": once, "csr": csr}, nil); code != 200 {
		t.Fatalf("first use: %d", code)
	}
	expired := rw.token(t, connector.TokenRequest{TTL: time.Millisecond})
	time.Sleep(5 * time.Millisecond)
	otherTenant, _ := auth.NewToken("globex", nil)
	good := rw.token(t, connector.TokenRequest{Uses: 10})
	_, named := newCSR(t, &x509.CertificateRequest{URIs: []*url.URL{auth.DeviceURI("acme", "admin-pc")}})
	cases := []struct {
		name   string
		body   any
		want   int
		reason string // in the audit log; "" when the gateway refuses alone
	}{
		{"token used up", map[string]string{"token": once, "csr": csr}, 403, "token_used_up"},
		{"token expired", map[string]string{"token": expired, "csr": csr}, 403, "token_expired"},
		{"token of another tenant", map[string]string{"token": otherTenant.Text, "csr": csr}, 403, ""},
		{"wrong secret", map[string]string{"token": forge(good), "csr": csr}, 403, ""},
		{"garbage token", map[string]string{"token": "sek1_acme_hello", "csr": csr}, 403, ""},
		{"garbage CSR", map[string]string{"token": good, "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, 403, "certificate request"},
		{"CSR naming a device", map[string]string{"token": good, "csr": named}, 403, "names itself"},
		{"oversized body", []byte(`{"token":"` + strings.Repeat("a", 20<<10) + `"}`), 400, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, eb := rw.enrollCall(t, "/v1/enroll", tc.body, nil)
			if code != tc.want || (code == 403 && eb.Status != "refused") || eb.Certificate != "" {
				t.Fatalf("status %d %+v, want %d and a generic refusal", code, eb, tc.want)
			}
			if tc.reason == "" {
				return
			}
			events, _ := rw.store.AuditLog(ctx, "acme", time.Time{}, 50)
			for _, e := range events {
				if e.Action == auth.AuditRefuse && strings.Contains(e.Reason, tc.reason) {
					return
				}
			}
			t.Fatalf("no refusal with %q in the audit log: %+v", tc.reason, events)
		})
	}
	// The token with 10 uses lost none to the refused CSRs... one was spent
	// by each refused CSR? No: the CSR is checked before the token is used.
	toks, _ := rw.store.ListTokens(ctx, "acme")
	for _, tk := range toks {
		if tk.UsesLeft == 10 {
			return
		}
	}
	t.Fatalf("refused requests spent uses of a good token: %+v", toks)
}

// forge keeps a token's tenant and id but changes its secret and checksum
// consistently... which it cannot: any change breaks the checksum, so this
// is refused at the gateway without a database.
func forge(tok string) string {
	parts := strings.Split(tok, "_")
	parts[3] = strings.Repeat("a", len(parts[3]))
	return strings.Join(parts, "_")
}

func TestEnrollWithApproval(t *testing.T) {
	rw := startRegistryWorld(t, "", nil)
	tok := rw.token(t, connector.TokenRequest{RequireApproval: true})
	key, csr := newCSR(t, nil)
	code, eb := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": tok, "csr": csr}, nil)
	if code != 202 || eb.Status != "pending" || eb.DeviceID == "" || eb.PollAfterSeconds < 1 {
		t.Fatalf("enroll: %d %+v", code, eb)
	}
	poll := map[string]string{"device_id": eb.DeviceID, "tenant": "acme", "csr": csr}
	if code, again := rw.enrollCall(t, "/v1/enroll", poll, nil); code != 202 || again.Status != "pending" {
		t.Fatalf("poll before approval: %d %+v", code, again)
	}
	// Polling with another key is refused: the device is its key.
	_, otherCSR := newCSR(t, nil)
	if code, _ := rw.enrollCall(t, "/v1/enroll", map[string]string{"device_id": eb.DeviceID, "tenant": "acme", "csr": otherCSR}, nil); code != 403 {
		t.Fatalf("poll with another key: %d", code)
	}
	if _, err := rw.conn.c.Approve(context.Background(), eb.DeviceID, "test"); err != nil {
		t.Fatal(err)
	}
	code, issued := rw.enrollCall(t, "/v1/enroll", poll, nil)
	if code != 200 || issued.Status != "issued" || issued.DeviceID != eb.DeviceID {
		t.Fatalf("poll after approval: %d %+v", code, issued)
	}
	cert := tlsCert(t, issued, key)
	if code, _ := status(t, rw.agent(&cert, false), rw.url("/api/policy")); code != 200 {
		t.Fatalf("approved device refused: %d", code)
	}
}

// TestRenewal: before expiry and within the grace period after it a
// device renews with its certificate; past the grace, or once revoked,
// it cannot. The connector's clock is moved.
func TestRenewal(t *testing.T) {
	rw := startRegistryWorld(t, "", func(c *connector.Config) {
		c.Enrollment.AgentLifetime, c.Enrollment.RenewGrace = time.Hour, 48*time.Hour
	})
	tok := rw.token(t, connector.TokenRequest{Uses: 5})
	key, csr := newCSR(t, nil)
	_, eb := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": tok, "csr": csr}, nil)
	cert := tlsCert(t, eb, key)
	renew := map[string]string{"csr": csr}

	code, r1 := rw.enrollCall(t, "/v1/renew", renew, &cert)
	if code != 200 || r1.DeviceID != eb.DeviceID || r1.Certificate == eb.Certificate {
		t.Fatalf("renew before expiry: %d %+v", code, r1)
	}
	rw.clock.advance(3 * time.Hour) // expired two hours ago, grace 48h
	if code, r2 := rw.enrollCall(t, "/v1/renew", renew, &cert); code != 200 || r2.Status != "issued" {
		t.Fatalf("renew within grace: %d %+v", code, r2)
	}
	_, otherCSR := newCSR(t, nil)
	if code, _ := rw.enrollCall(t, "/v1/renew", map[string]string{"csr": otherCSR}, &cert); code != 403 {
		t.Fatalf("renew with another key: %d", code)
	}
	rw.clock.advance(48 * time.Hour) // past the grace
	if code, _ := rw.enrollCall(t, "/v1/renew", renew, &cert); code != 403 {
		t.Fatalf("renew past grace: %d", code)
	}

	// A revoked device cannot renew, even with a certificate still valid.
	rw.clock.advance(-51 * time.Hour)
	key2, csr2 := newCSR(t, nil)
	_, eb2 := rw.enrollCall(t, "/v1/enroll", map[string]string{"token": tok, "csr": csr2}, nil)
	cert2 := tlsCert(t, eb2, key2)
	if _, err := rw.conn.c.Revoke(context.Background(), eb2.DeviceID, "stolen laptop", "test"); err != nil {
		t.Fatal(err)
	}
	if code, _ := rw.enrollCall(t, "/v1/renew", map[string]string{"csr": csr2}, &cert2); code != 403 {
		t.Fatalf("revoked device renewed: %d", code)
	}
}

// TestEnrollRateLimited: one source address cannot hammer the endpoint.
func TestEnrollRateLimited(t *testing.T) {
	acme := newTenant(t, "acme")
	w := startGateway(t, func(c *gateway.Config) { c.Limits.EnrollPerSource = 6 }, acme)
	limited := 0
	for range 30 {
		code, _ := w.enrollCall(t, "/v1/enroll", map[string]string{"token": "garbage"}, nil)
		if code == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("30 quick requests from one address were never limited")
	}
}
