package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs/certstest"
)

// auth's tests may not import certs (internal/archtest: auth imports no
// other room, and its tests may only add helpers), so the CAs come from
// certstest; certs' own tests cover NewCA and IssueAgent with VerifyAgent.

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// chainOf returns the certificates of a TLS certificate, leaf first, as the
// peer sends them.
func chainOf(t testing.TB, c tls.Certificate) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, cert)
	}
	return out
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sign creates tmpl signed by parent's key (self-signed when parent is nil).
func sign(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, priv crypto.Signer) *x509.Certificate {
	t.Helper()
	if parent == nil {
		parent = tmpl
	}
	if tmpl.SerialNumber == nil {
		n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
		if err != nil {
			t.Fatal(err)
		}
		tmpl.SerialNumber = n
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return c
}

// leafWithURIs signs a client-auth leaf with the given URI SANs by ca.
func leafWithURIs(t testing.TB, caCert *x509.Certificate, caKey crypto.Signer, now time.Time, uris ...string) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "hand-made"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range uris {
		tmpl.URIs = append(tmpl.URIs, mustParseURL(t, s))
	}
	return sign(t, tmpl, caCert, newKey(t).Public(), caKey)
}

type verifyCase struct {
	name    string
	chain   []*x509.Certificate
	tenant  string
	roots   *x509.CertPool
	at      time.Time
	wantErr error // nil: success, with wantDev as device
	wantDev string
	reason  string
}

func runVerify(t *testing.T, tests []verifyCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := auth.VerifyAgent(tt.chain, tt.tenant, tt.roots, tt.at)
			if got := auth.Reason(err); got != tt.reason {
				t.Errorf("Reason = %q, want %q (err: %v)", got, tt.reason, err)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("VerifyAgent error = %v, want %v", err, tt.wantErr)
				}
				if p != (auth.Principal{}) {
					t.Errorf("VerifyAgent returned %+v with its error", p)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyAgent: %v", err)
			}
			want := auth.Principal{Tenant: tt.tenant, DeviceID: tt.wantDev, CertSHA256: sha256.Sum256(tt.chain[0].Raw)}
			if p != want {
				t.Errorf("VerifyAgent = %+v, want %+v", p, want)
			}
		})
	}
}

func TestVerifyAgent(t *testing.T) {
	caA := certstest.CA(t, "a")
	caA2 := certstest.CA(t, "a") // same tenant, another key
	caB := certstest.CA(t, "b")
	// certstest.CA starts at time.Now() - Backdate: now is not earlier.
	now := time.Now().Truncate(time.Second)

	good := chainOf(t, certstest.AgentAt(t, caA, "pc-1", now, 0))
	leafB := chainOf(t, certstest.AgentAt(t, caB, "pc-1", now, 0))
	old := chainOf(t, certstest.AgentAt(t, caA, "pc-old", now.Add(-8*24*time.Hour), 0))

	// A CA whose key is A's but which writes tenant "b" into its leaves.
	forger := certstest.CA(t, "b")
	forger.Cert, forger.Key = caA.Cert, caA.Key
	forged := chainOf(t, certstest.AgentAt(t, forger, "pc-1", now, 0))

	// Server-auth only, with a valid sekisho URI added by hand.
	srvKey := newKey(t)
	srv, err := caA.IssueServer(srvKey.Public(), []string{"pc.example"}, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv.URIs = []*url.URL{auth.DeviceURI("a", "pc-1")}
	srvLeaf := sign(t, srv, caA.Cert, srvKey.Public(), caA.Key)
	if len(srvLeaf.ExtKeyUsage) != 1 || srvLeaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Fatalf("hand-made server leaf has EKU %v", srvLeaf.ExtKeyUsage)
	}

	// An agent certificate used as a CA for a leaf of its own making.
	agent := certstest.AgentAt(t, caA, "pc-1", now, 0)
	subTmpl := &x509.Certificate{
		NotBefore:   now.Add(-time.Minute),
		NotAfter:    now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{auth.DeviceURI("a", "evil")},
	}
	sub := sign(t, subTmpl, agent.Leaf, newKey(t).Public(), agent.PrivateKey.(crypto.Signer))

	leaf := good[0]
	tests := []verifyCase{
		{name: "valid", chain: good, tenant: "a", roots: pool(caA.Cert), at: now, wantDev: "pc-1", reason: "ok"},
		{name: "valid with other tenants' CAs in the pool", chain: good, tenant: "a", roots: pool(caB.Cert, caA.Cert), at: now, wantDev: "pc-1", reason: "ok"},
		{name: "nil chain", chain: nil, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrNoCertificate, reason: "no_certificate"},
		{name: "empty chain", chain: []*x509.Certificate{}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrNoCertificate, reason: "no_certificate"},
		{name: "leaf of tenant b verified as a", chain: leafB, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "leaf of tenant b, a's pool holds b's CA", chain: leafB, tenant: "a", roots: pool(caA.Cert, caB.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "tenant b named by a's CA, verified as a", chain: forged, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "tenant b named by a's CA, verified as b", chain: forged, tenant: "b", roots: pool(caB.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "other CA of the same tenant", chain: good, tenant: "a", roots: pool(caA2.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "empty pool", chain: good, tenant: "a", roots: x509.NewCertPool(), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "expired a day ago", chain: old, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrExpired, reason: "expired"},
		{name: "at NotAfter", chain: good, tenant: "a", roots: pool(caA.Cert), at: leaf.NotAfter, wantDev: "pc-1", reason: "ok"},
		{name: "a second past NotAfter", chain: good, tenant: "a", roots: pool(caA.Cert), at: leaf.NotAfter.Add(time.Second), wantErr: auth.ErrExpired, reason: "expired"},
		{name: "clock 4 minutes behind", chain: good, tenant: "a", roots: pool(caA.Cert), at: now.Add(-4 * time.Minute), wantDev: "pc-1", reason: "ok"},
		{name: "at NotBefore", chain: good, tenant: "a", roots: pool(caA.Cert), at: leaf.NotBefore, wantDev: "pc-1", reason: "ok"},
		{name: "a second before NotBefore", chain: good, tenant: "a", roots: pool(caA.Cert), at: leaf.NotBefore.Add(-time.Second), wantErr: auth.ErrExpired, reason: "expired"},
		{name: "clock 6 minutes behind", chain: good, tenant: "a", roots: pool(caA.Cert), at: now.Add(-6 * time.Minute), wantErr: auth.ErrExpired, reason: "expired"},
		// x509 reports IncompatibleUsage for the server-auth-only leaf,
		// which classify maps to ErrWrongKeyUsage (not ErrUntrusted).
		{name: "server auth only", chain: []*x509.Certificate{srvLeaf}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrWrongKeyUsage, reason: "wrong_key_usage"},
		{name: "no URI SAN", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now)}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "only a foreign URI SAN", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now, "https://a/device/pc-1")}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "URI path not /device/", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now, "sekisho://a/devices/pc-1")}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "URI tenant uppercase", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now, "sekisho://A/device/pc-1")}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "URI with query", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now, "sekisho://a/device/pc-1?x=1")}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "two device URIs", chain: []*x509.Certificate{leafWithURIs(t, caA.Cert, caA.Key, now, "sekisho://a/device/pc-1", "sekisho://a/device/pc-2")}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrMalformedClient, reason: "malformed"},
		{name: "agent certificate as issuer", chain: []*x509.Certificate{sub, agent.Leaf}, tenant: "a", roots: pool(caA.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
	}
	runVerify(t, tests)
}

// TestVerifyAgentIntermediate builds root -> intermediate -> agent, with
// the intermediate sent in the chain as a TLS peer would.
func TestVerifyAgentIntermediate(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	rootKey := newKey(t)
	root := sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: "root", Organization: []string{"a"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
	}, nil, rootKey.Public(), rootKey)

	// The intermediate is a tenant CA (from certs.NewCA, MaxPathLenZero)
	// whose certificate the root signs instead of itself.
	inter := certstest.CA(t, "a")
	interTmpl := *inter.Cert
	inter.Cert = sign(t, &interTmpl, root, inter.Key.Public(), rootKey)
	agent := certstest.AgentAt(t, inter, "pc-1", now, 0)

	// A tenant CA from certs.NewCA is a root that allows no intermediate.
	zero := certstest.CA(t, "a")
	zeroInter := certstest.CA(t, "a")
	zeroInterTmpl := *zeroInter.Cert
	zeroInter.Cert = sign(t, &zeroInterTmpl, zero.Cert, zeroInter.Key.Public(), zero.Key)
	underZero := certstest.AgentAt(t, zeroInter, "pc-1", now, 0)

	runVerify(t, []verifyCase{
		{name: "intermediate sent", chain: []*x509.Certificate{agent.Leaf, inter.Cert}, tenant: "a", roots: pool(root), at: now, wantDev: "pc-1", reason: "ok"},
		{name: "intermediate missing", chain: []*x509.Certificate{agent.Leaf}, tenant: "a", roots: pool(root), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
		{name: "intermediate as root", chain: []*x509.Certificate{agent.Leaf}, tenant: "a", roots: pool(inter.Cert), at: now, wantDev: "pc-1", reason: "ok"},
		{name: "intermediate expired", chain: []*x509.Certificate{agent.Leaf, inter.Cert}, tenant: "a", roots: pool(root), at: root.NotAfter.Add(time.Minute), wantErr: auth.ErrExpired, reason: "expired"},
		{name: "under a MaxPathLenZero root", chain: []*x509.Certificate{underZero.Leaf, zeroInter.Cert}, tenant: "a", roots: pool(zero.Cert), at: now, wantErr: auth.ErrUntrusted, reason: "untrusted"},
	})
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{auth.ErrNoCertificate, "no_certificate"},
		{auth.ErrUnknownTenant, "unknown_tenant"},
		{auth.ErrUntrusted, "untrusted"},
		{auth.ErrExpired, "expired"},
		{auth.ErrWrongKeyUsage, "wrong_key_usage"},
		{auth.ErrMalformedClient, "malformed"},
		{auth.ErrNoIdentity, "other"},
		{errors.New("boom"), "other"},
		{fmt.Errorf("verify agent: %w", auth.ErrExpired), "expired"},
		{fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", auth.ErrWrongKeyUsage)), "wrong_key_usage"},
		{fmt.Errorf("%w: %q", auth.ErrUnknownTenant, "zz"), "unknown_tenant"},
		{fmt.Errorf("%w: %w", auth.ErrMalformedClient, auth.ErrNoIdentity), "malformed"},
		{fmt.Errorf("%w: %w", auth.ErrUntrusted, x509.UnknownAuthorityError{}), "untrusted"},
		{errors.Join(errors.New("x"), auth.ErrNoCertificate), "no_certificate"},
		{fmt.Errorf("not wrapped: %v", auth.ErrExpired), "other"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := auth.Reason(tt.err); got != tt.want {
				t.Errorf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
