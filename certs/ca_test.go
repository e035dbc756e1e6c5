package certs_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// t0 is a fixed clock, whole seconds (certificates keep no fractions).
var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := certs.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCA(t testing.TB, tenant string, now time.Time, lifetime time.Duration) *certs.CA {
	t.Helper()
	ca, err := certs.NewCA(tenant, now, lifetime)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", tenant, err)
	}
	return ca
}

func pool(cs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cs {
		p.AddCert(c)
	}
	return p
}

func TestNewCA(t *testing.T) {
	tests := []struct {
		name     string
		tenant   string
		lifetime time.Duration
		want     time.Duration // NotAfter - now
	}{
		{"default lifetime", "acme", 0, certs.DefaultCALifetime},
		{"one year", "acme-2", 365 * 24 * time.Hour, 365 * 24 * time.Hour},
		{"one day", "a", 24 * time.Hour, 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := newCA(t, tt.tenant, t0, tt.lifetime)
			c := ca.Cert
			if ca.Tenant != tt.tenant {
				t.Errorf("Tenant = %q, want %q", ca.Tenant, tt.tenant)
			}
			if !c.IsCA || !c.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want both", c.IsCA, c.BasicConstraintsValid)
			}
			if c.MaxPathLen != 0 || !c.MaxPathLenZero {
				t.Errorf("MaxPathLen = %d, MaxPathLenZero = %v; want 0, true", c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 {
				t.Errorf("KeyUsage %b lacks CertSign", c.KeyUsage)
			}
			if len(c.Subject.Organization) != 1 || c.Subject.Organization[0] != tt.tenant {
				t.Errorf("Organization = %q, want [%q]", c.Subject.Organization, tt.tenant)
			}
			if want := t0.Add(-certs.Backdate); !c.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", c.NotBefore, want)
			}
			if want := t0.Add(tt.want); !c.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", c.NotAfter, want)
			}
			if err := c.CheckSignatureFrom(c); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			pub, ok := c.PublicKey.(*ecdsa.PublicKey)
			if !ok || pub.Curve != elliptic.P256() {
				t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
			}
			if !pub.Equal(ca.Key.Public()) {
				t.Error("CA key does not match its certificate")
			}
		})
	}
	if certs.Backdate != 5*time.Minute {
		t.Errorf("Backdate = %v; DESIGN.md asks a few minutes, the tests assume 5m", certs.Backdate)
	}
}

func TestNewCARefusesTenant(t *testing.T) {
	for _, tenant := range []string{"", "Acme", "-acme", "acme-", "ac_me", "ac.me", strings.Repeat("a", 64)} {
		t.Run(tenant, func(t *testing.T) {
			if ca, err := certs.NewCA(tenant, t0, 0); err == nil || ca != nil {
				t.Errorf("NewCA(%q) = %v, %v; want nil and an error", tenant, ca, err)
			}
		})
	}
}

func TestIssueAgent(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	short := newCA(t, "acme", t0, 48*time.Hour)
	now := t0.Add(time.Hour)
	tests := []struct {
		name     string
		ca       *certs.CA
		id       string
		lifetime time.Duration
		wantEnd  time.Time
	}{
		{"default lifetime", ca, "pc-01", 0, now.Add(7 * 24 * time.Hour)},
		{"one day", ca, "PC_02.office", 24 * time.Hour, now.Add(24 * time.Hour)},
		{"longest id", ca, strings.Repeat("d", 128), time.Hour, now.Add(time.Hour)},
		{"capped at CA NotAfter", short, "pc-03", 0, short.Cert.NotAfter},
		{"capped, asked exactly CA's end", short, "pc-04", 47 * time.Hour, short.Cert.NotAfter},
		{"just below CA's end", short, "pc-05", 46 * time.Hour, now.Add(46 * time.Hour)},
	}
	if certs.DefaultAgentLifetime != 7*24*time.Hour {
		t.Errorf("DefaultAgentLifetime = %v, want 7 days", certs.DefaultAgentLifetime)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t)
			c, err := tt.ca.IssueAgent(certs.AgentRequest{DeviceID: tt.id, PublicKey: key.Public(), Lifetime: tt.lifetime, Now: now})
			if err != nil {
				t.Fatalf("IssueAgent: %v", err)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != "sekisho://acme/device/"+tt.id {
				t.Errorf("URIs = %v, want [sekisho://acme/device/%s]", c.URIs, tt.id)
			}
			p, err := auth.PrincipalOf(c)
			if err != nil || p.Tenant != "acme" || p.DeviceID != tt.id {
				t.Errorf("PrincipalOf = %+v, %v", p, err)
			}
			if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(c.UnknownExtKeyUsage) != 0 {
				t.Errorf("ExtKeyUsage = %v (unknown %v), want client auth only", c.ExtKeyUsage, c.UnknownExtKeyUsage)
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %b, want digital signature only", c.KeyUsage)
			}
			if c.IsCA {
				t.Error("agent certificate is a CA")
			}
			if want := now.Add(-certs.Backdate); !c.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", c.NotBefore, want)
			}
			if !c.NotAfter.Equal(tt.wantEnd) {
				t.Errorf("NotAfter = %v, want %v", c.NotAfter, tt.wantEnd)
			}
			if !key.PublicKey.Equal(c.PublicKey) {
				t.Error("certificate does not carry the requested public key")
			}
			if err := c.CheckSignatureFrom(tt.ca.Cert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
			got, err := auth.VerifyAgent([]*x509.Certificate{c}, "acme", pool(tt.ca.Cert), now)
			if err != nil {
				t.Fatalf("VerifyAgent: %v", err)
			}
			if got.DeviceID != tt.id || got.Tenant != "acme" {
				t.Errorf("VerifyAgent = %+v", got)
			}
			// The last valid second, and the first invalid one.
			if _, err := auth.VerifyAgent([]*x509.Certificate{c}, "acme", pool(tt.ca.Cert), tt.wantEnd); err != nil {
				t.Errorf("VerifyAgent at NotAfter: %v", err)
			}
			if _, err := auth.VerifyAgent([]*x509.Certificate{c}, "acme", pool(tt.ca.Cert), tt.wantEnd.Add(time.Second)); auth.Reason(err) != "expired" {
				t.Errorf("VerifyAgent after NotAfter: %v, want expired", err)
			}
		})
	}
}

// TestIssueAgentClockSkew: a certificate issued at now already verifies on
// a PC whose clock is 4 minutes behind, not on one 6 minutes behind.
func TestIssueAgentClockSkew(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	c, err := ca.IssueAgent(certs.AgentRequest{DeviceID: "pc", PublicKey: newKey(t).Public(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		skew   time.Duration
		reason string
	}{
		{0, "ok"},
		{-4 * time.Minute, "ok"},
		{-certs.Backdate, "ok"},
		{-6 * time.Minute, "expired"},
	} {
		t.Run(tt.skew.String(), func(t *testing.T) {
			_, err := auth.VerifyAgent([]*x509.Certificate{c}, "acme", pool(ca.Cert), t0.Add(tt.skew))
			if got := auth.Reason(err); got != tt.reason {
				t.Errorf("at now%v: %q (%v), want %q", tt.skew, got, err, tt.reason)
			}
		})
	}
}

func TestIssueAgentRefuses(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	pub := newKey(t).Public()
	tests := []struct {
		name string
		req  certs.AgentRequest
	}{
		{"empty device id", certs.AgentRequest{DeviceID: "", PublicKey: pub, Now: t0}},
		{"device id too long", certs.AgentRequest{DeviceID: strings.Repeat("d", 129), PublicKey: pub, Now: t0}},
		{"device id with slash", certs.AgentRequest{DeviceID: "pc/1", PublicKey: pub, Now: t0}},
		{"device id with space", certs.AgentRequest{DeviceID: "pc 1", PublicKey: pub, Now: t0}},
		{"device id unicode", certs.AgentRequest{DeviceID: "pé", PublicKey: pub, Now: t0}},
		{"nil public key", certs.AgentRequest{DeviceID: "pc", Now: t0}},
		{"not a public key", certs.AgentRequest{DeviceID: "pc", PublicKey: "key", Now: t0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := ca.IssueAgent(tt.req); err == nil || c != nil {
				t.Errorf("IssueAgent = %v, %v; want nil and an error", c, err)
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, ca *certs.CA) (certFile, keyFile string) {
		certFile = filepath.Join(dir, name+".crt")
		keyFile = filepath.Join(dir, name+".key")
		if err := certs.WriteCert(certFile, ca.Cert.Raw); err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKey(keyFile, ca.Key); err != nil {
			t.Fatal(err)
		}
		return certFile, keyFile
	}
	ca := newCA(t, "acme", t0, 0)
	caCrt, caKey := write("ca", ca)
	_, otherKey := write("other", newCA(t, "acme", t0, 0))

	// An agent certificate and its own key: they match, but are no CA.
	agentKey := newKey(t)
	agent, err := ca.IssueAgent(certs.AgentRequest{DeviceID: "pc", PublicKey: agentKey.Public(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	agentCrt, agentKeyFile := write("agent", &certs.CA{Cert: agent, Key: agentKey})

	t.Run("ok", func(t *testing.T) {
		got, err := certs.LoadCA("acme", caCrt, caKey)
		if err != nil {
			t.Fatalf("LoadCA: %v", err)
		}
		if got.Tenant != "acme" || !got.Cert.Equal(ca.Cert) || !ca.Cert.PublicKey.(*ecdsa.PublicKey).Equal(got.Key.Public()) {
			t.Fatalf("LoadCA = %+v, want the written CA", got)
		}
		// The loaded CA issues certificates that the original verifies.
		c, err := got.IssueAgent(certs.AgentRequest{DeviceID: "pc", PublicKey: newKey(t).Public(), Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := auth.VerifyAgent([]*x509.Certificate{c}, "acme", pool(ca.Cert), t0); err != nil {
			t.Errorf("VerifyAgent: %v", err)
		}
	})
	refusals := []struct {
		name, certFile, keyFile string
		mention                 []string
	}{
		{"not a CA", agentCrt, agentKeyFile, []string{agentCrt, "not a CA"}},
		{"key of another CA", caCrt, otherKey, []string{caCrt, otherKey}},
		{"key file is a certificate", caCrt, caCrt, []string{caCrt}},
		{"cert file is a key", caKey, caKey, []string{caKey}},
		{"missing cert", filepath.Join(dir, "none.crt"), caKey, []string{"none.crt"}},
		{"missing key", caCrt, filepath.Join(dir, "none.key"), []string{"none.key"}},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certs.LoadCA("acme", tt.certFile, tt.keyFile)
			if err == nil || got != nil {
				t.Fatalf("LoadCA = %v, %v; want nil and an error", got, err)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

// TestLoadCARefusesInvalidTenant: NewCA refuses a tenant name that cannot
// appear in a URI SAN, LoadCA should as well, or the CA issues agent
// certificates that auth.PrincipalOf (and so the gateway) refuses.
func TestLoadCARefusesInvalidTenant(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "acme", t0, 0)
	crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := certs.WriteCert(crt, ca.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKey(key, ca.Key); err != nil {
		t.Fatal(err)
	}
	for _, tenant := range []string{"", "Acme", "ac_me", "-acme"} {
		t.Run(tenant, func(t *testing.T) {
			got, err := certs.LoadCA(tenant, crt, key)
			if err == nil {
				c, ierr := got.IssueAgent(certs.AgentRequest{DeviceID: "pc", PublicKey: newKey(t).Public(), Now: t0})
				if ierr == nil {
					_, perr := auth.PrincipalOf(c)
					t.Errorf("LoadCA(%q) succeeded; its agent certificate %v is refused by PrincipalOf: %v", tenant, c.URIs, perr)
				} else {
					t.Errorf("LoadCA(%q) succeeded", tenant)
				}
			}
		})
	}
}
