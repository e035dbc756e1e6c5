package certs_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

func TestIssueServer(t *testing.T) {
	ca := newCA(t, "public", t0, 0)
	key := newKey(t)
	now := t0.Add(time.Hour)
	hosts := []string{"gw.example.com", "localhost", "127.0.0.1", "::1", "192.0.2.7"}
	c, err := ca.IssueServer(key.Public(), hosts, now, 24*time.Hour)
	if err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	if want := []string{"gw.example.com", "localhost"}; !equalStrings(c.DNSNames, want) {
		t.Errorf("DNSNames = %q, want %q", c.DNSNames, want)
	}
	wantIPs := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("192.0.2.7")}
	if len(c.IPAddresses) != len(wantIPs) {
		t.Fatalf("IPAddresses = %v, want %v", c.IPAddresses, wantIPs)
	}
	for i, ip := range wantIPs {
		if !c.IPAddresses[i].Equal(ip) {
			t.Errorf("IPAddresses[%d] = %v, want %v", i, c.IPAddresses[i], ip)
		}
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage = %v, want server auth only", c.ExtKeyUsage)
	}
	if c.IsCA || len(c.URIs) != 0 {
		t.Errorf("IsCA = %v, URIs = %v; want a plain server leaf", c.IsCA, c.URIs)
	}
	if c.Subject.CommonName != hosts[0] {
		t.Errorf("CommonName = %q, want %q", c.Subject.CommonName, hosts[0])
	}
	if !c.NotBefore.Equal(now.Add(-certs.Backdate)) || !c.NotAfter.Equal(now.Add(24*time.Hour)) {
		t.Errorf("valid %v to %v, want %v to %v", c.NotBefore, c.NotAfter, now.Add(-certs.Backdate), now.Add(24*time.Hour))
	}
	if !key.PublicKey.Equal(c.PublicKey) {
		t.Error("certificate does not carry the given public key")
	}
	roots := pool(ca.Cert)
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"gw.example.com", true},
		{"GW.Example.COM", true},
		{"localhost", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"192.0.2.7", true},
		{"other.example.com", false},
		{"sub.gw.example.com", false},
		{"127.0.0.2", false},
	} {
		t.Run(tt.host, func(t *testing.T) {
			_, err := c.Verify(x509.VerifyOptions{
				DNSName:     tt.host,
				Roots:       roots,
				CurrentTime: now,
				KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if (err == nil) != tt.ok {
				t.Errorf("Verify(%q) = %v, want ok=%v", tt.host, err, tt.ok)
			}
			var he x509.HostnameError
			if !tt.ok && !errors.As(err, &he) {
				t.Errorf("Verify(%q) = %v, want a HostnameError", tt.host, err)
			}
		})
	}
	t.Run("not for client auth", func(t *testing.T) {
		_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err == nil {
			t.Error("server certificate verifies for client auth")
		}
	})
	t.Run("no hosts", func(t *testing.T) {
		for _, h := range [][]string{nil, {}} {
			if c, err := ca.IssueServer(key.Public(), h, now, time.Hour); err == nil || c != nil {
				t.Errorf("IssueServer(%q) = %v, %v; want nil and an error", h, c, err)
			}
		}
	})
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSelfSigned(t *testing.T) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa", newKey(t)},
		{"ed25519", ed},
		{"rsa", rsaKey()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := certs.SelfSigned(tt.key, "connector-1", t0)
			if err != nil {
				t.Fatalf("SelfSigned: %v", err)
			}
			if len(cert.Certificate) != 1 || cert.Leaf == nil {
				t.Fatalf("SelfSigned: %d certificates, leaf %v", len(cert.Certificate), cert.Leaf)
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatalf("leaf does not parse: %v", err)
			}
			if !leaf.Equal(cert.Leaf) {
				t.Error("Leaf is not Certificate[0]")
			}
			if err := leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if leaf.Subject.CommonName != "connector-1" {
				t.Errorf("CommonName = %q", leaf.Subject.CommonName)
			}
			if !leaf.NotBefore.Equal(t0.Add(-certs.Backdate)) {
				t.Errorf("NotBefore = %v, want %v", leaf.NotBefore, t0.Add(-certs.Backdate))
			}
			if !leaf.NotAfter.After(t0.Add(365 * 24 * time.Hour)) {
				t.Errorf("NotAfter = %v: a connector identity should outlive a year", leaf.NotAfter)
			}
			if s, ok := cert.PrivateKey.(crypto.Signer); !ok || !equalKeys(tt.key, s) {
				t.Error("PrivateKey is not the given key")
			}
			pk, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
			if !ok || !pk.Equal(tt.key.Public()) {
				t.Error("certificate key does not match")
			}
			// The tls package agrees that certificate and key belong together.
			keyPEM, err := certs.EncodeKey(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certs.EncodeCert(leaf.Raw), keyPEM); err != nil {
				t.Errorf("tls.X509KeyPair: %v", err)
			}
			// The pin is the key's: stable across certificates.
			pin, err := auth.PinOf(tt.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if got := auth.PinOfCert(leaf); got != pin {
				t.Errorf("PinOfCert = %v, PinOf(key) = %v", got, pin)
			}
			again, err := certs.SelfSigned(tt.key, "renamed", t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again.Leaf.Raw, leaf.Raw) {
				t.Error("two self-signed certificates are identical")
			}
			if got := auth.PinOfCert(again.Leaf); got != pin {
				t.Errorf("pin changed with the certificate: %v, want %v", got, pin)
			}
			other, err := certs.SelfSigned(newKey(t), "connector-1", t0)
			if err != nil {
				t.Fatal(err)
			}
			if auth.PinOfCert(other.Leaf) == pin {
				t.Error("another key has the same pin")
			}
		})
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state", "connector.key")

	k1, created, err := certs.LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("first LoadOrCreateKey = created %v, %v; want created", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %o, want 0600", fi.Mode().Perm())
	}
	k2, created, err := certs.LoadOrCreateKey(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateKey = created %v, %v; want loaded", created, err)
	}
	if !equalKeys(k1, k2) {
		t.Error("second call returned another key")
	}
	pk, ok := k1.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pk.Equal(k2.Public()) {
		t.Error("public keys differ")
	}

	t.Run("existing RSA key is loaded", func(t *testing.T) {
		p := filepath.Join(dir, "rsa.key")
		if err := certs.WriteKey(p, rsaKey()); err != nil {
			t.Fatal(err)
		}
		k, created, err := certs.LoadOrCreateKey(p)
		if err != nil || created || !equalKeys(rsaKey(), k) {
			t.Errorf("LoadOrCreateKey = created %v, %v; want the RSA key loaded", created, err)
		}
	})
	for _, tt := range []struct {
		name  string
		setup func(p string) error
	}{
		{"garbage", func(p string) error { return os.WriteFile(p, []byte("not a key\n"), 0o600) }},
		{"empty", func(p string) error { return os.WriteFile(p, nil, 0o600) }},
		{"certificate instead of key", func(p string) error {
			return os.WriteFile(p, certs.EncodeCert(newCA(t, "acme", t0, 0).Cert.Raw), 0o600)
		}},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := tt.setup(p); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(p)
			k, created, err := certs.LoadOrCreateKey(p)
			if err == nil || created || k != nil {
				t.Fatalf("LoadOrCreateKey = %v, created %v, %v; want an error", k, created, err)
			}
			if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
				t.Error("the file was replaced")
			}
		})
	}
}
