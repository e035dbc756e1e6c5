package certs_test

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
)

// rsaKey is generated once: RSA key generation is slow under -race.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// equalKeys reports whether two private keys are the same key.
func equalKeys(a, b crypto.Signer) bool {
	k, ok := a.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && k.Equal(b)
}

func TestKeyRoundTrip(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa p256", newKey(t)},
		{"ecdsa p384", p384},
		{"rsa", rsaKey()},
		{"ed25519", ed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data, err := certs.EncodeKey(tt.key)
			if err != nil {
				t.Fatalf("EncodeKey: %v", err)
			}
			block, rest := pem.Decode(data)
			if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
				t.Fatalf("EncodeKey wrote %q, want one PKCS #8 PRIVATE KEY block", data)
			}
			if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Fatalf("not PKCS #8: %v", err)
			}
			got, err := certs.ParseKey(data)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !equalKeys(tt.key, got) {
				t.Errorf("ParseKey returned another key (%T)", got)
			}
		})
	}
}

func TestParseKeyFormats(t *testing.T) {
	ec := newKey(t)
	sec1, err := x509.MarshalECPrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	ecParams := pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	pkcs8, err := x509.MarshalPKCS8PrivateKey(ec)
	if err != nil {
		t.Fatal(err)
	}
	rk := rsaKey()
	ca := newCA(t, "acme", t0, 0)
	for _, tt := range []struct {
		name string
		data []byte
		want crypto.Signer
	}{
		{"SEC 1", pemBlock("EC PRIVATE KEY", sec1), ec},
		{"SEC 1 after EC PARAMETERS (openssl ecparam -genkey)", append(ecParams, pemBlock("EC PRIVATE KEY", sec1)...), ec},
		{"PKCS #1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), rk},
		{"after a certificate", append(certs.EncodeCert(ca.Cert.Raw), pemBlock("PRIVATE KEY", pkcs8)...), ec},
		{"with surrounding text", []byte("my key:\n" + string(pemBlock("PRIVATE KEY", pkcs8)) + "end\n"), ec},
		{"first of two keys", append(pemBlock("PRIVATE KEY", pkcs8), pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk))...), ec},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certs.ParseKey(tt.data)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if !equalKeys(tt.want, got) {
				t.Errorf("ParseKey returned another key (%T)", got)
			}
		})
	}
}

func TestParseKeyRefuses(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	xk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := x509.MarshalPKCS8PrivateKey(xk)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(ca.Key.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"text", []byte("not a key")},
		{"DER without PEM", x509.MarshalPKCS1PrivateKey(rsaKey())},
		{"certificate only", certs.EncodeCert(ca.Cert.Raw)},
		{"public key", pemBlock("PUBLIC KEY", pub)},
		{"PKCS #8 garbage", pemBlock("PRIVATE KEY", []byte("garbage"))},
		{"SEC 1 garbage", pemBlock("EC PRIVATE KEY", []byte("garbage"))},
		{"PKCS #1 garbage", pemBlock("RSA PRIVATE KEY", []byte("garbage"))},
		{"PKCS #8 X25519 (cannot sign)", pemBlock("PRIVATE KEY", x25519)},
		{"encrypted PEM type", pemBlock("ENCRYPTED PRIVATE KEY", []byte("whatever"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := certs.ParseKey(tt.data); err == nil {
				t.Fatal("ParseKey succeeded, want an error")
			}
		})
	}
}

// TestParseKeyErrorReturnsNilKey: on error, the key is a nil interface, so
// that a caller testing key != nil is not handed a typed nil pointer.
func TestParseKeyErrorReturnsNilKey(t *testing.T) {
	for _, typ := range []string{"PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY"} {
		t.Run(typ, func(t *testing.T) {
			key, err := certs.ParseKey(pemBlock(typ, []byte("garbage")))
			if err == nil {
				t.Fatal("ParseKey succeeded")
			}
			if key != nil {
				t.Errorf("ParseKey returned key %#v (%T) with error %v; want a nil interface", key, key, err)
			}
		})
	}
}

type fakeSigner struct{}

func (fakeSigner) Public() crypto.PublicKey { return "pub" }
func (fakeSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("no")
}

func TestEncodeKeyRefusesUnknownKey(t *testing.T) {
	if data, err := certs.EncodeKey(fakeSigner{}); err == nil {
		t.Fatalf("EncodeKey(fake) = %q, want an error", data)
	}
}

func TestParseCerts(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	c1 := ca.Cert
	c2, err := ca.IssueAgent(certs.AgentRequest{DeviceID: "pc-2", PublicKey: newKey(t).Public(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	c3, err := ca.IssueAgent(certs.AgentRequest{DeviceID: "pc-3", PublicKey: newKey(t).Public(), Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	key, err := certs.EncodeKey(newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	enc := certs.EncodeCert
	corrupt := append([]byte(nil), c2.Raw[:len(c2.Raw)/2]...)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	ok := []struct {
		name string
		data []byte
		want []*x509.Certificate
	}{
		{"one", enc(c1.Raw), []*x509.Certificate{c1}},
		{"three in order", cat(enc(c2.Raw), enc(c1.Raw), enc(c3.Raw)), []*x509.Certificate{c2, c1, c3}},
		{"key and text skipped", cat([]byte("bundle:\n"), enc(c1.Raw), key, []byte("junk\n"), enc(c3.Raw)), []*x509.Certificate{c1, c3}},
		{"other block types skipped", cat(pemBlock("X509 CRL", []byte{1}), enc(c3.Raw), pemBlock("TRUSTED CERTIFICATE", c1.Raw)), []*x509.Certificate{c3}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certs.ParseCerts(tt.data)
			if err != nil {
				t.Fatalf("ParseCerts: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("ParseCerts returned %d certificates, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !got[i].Equal(tt.want[i]) {
					t.Errorf("certificate %d is %q, want %q", i, got[i].Subject, tt.want[i].Subject)
				}
			}
		})
	}
	bad := []struct {
		name    string
		data    []byte
		mention string
	}{
		{"empty", nil, "no PEM certificate"},
		{"text", []byte("hello"), "no PEM certificate"},
		{"key only", key, "no PEM certificate"},
		{"DER without PEM", c1.Raw, "no PEM certificate"},
		{"first corrupted", cat(pemBlock("CERTIFICATE", corrupt), enc(c1.Raw)), "certificate 1"},
		{"second corrupted", cat(enc(c1.Raw), pemBlock("CERTIFICATE", corrupt), enc(c3.Raw)), "certificate 2"},
		{"third corrupted, key between", cat(enc(c1.Raw), key, enc(c3.Raw), pemBlock("CERTIFICATE", []byte("x"))), "certificate 3"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			got, err := certs.ParseCerts(tt.data)
			if err == nil || got != nil {
				t.Fatalf("ParseCerts = %d certificates, %v; want nil and an error", len(got), err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
		})
	}
}

// TestParseCertsBadBase64: a CERTIFICATE block whose base64 is damaged is
// an error, like one whose DER is.
func TestParseCertsBadBase64(t *testing.T) {
	ca := newCA(t, "acme", t0, 0)
	good := certs.EncodeCert(ca.Cert.Raw)
	broken := bytes.Replace(good, []byte("\n"), []byte("\n!!!!"), 2) // '!' is not base64
	if _, err := certs.ParseCerts(broken); err == nil {
		t.Error("ParseCerts(only a damaged block) succeeded")
	}
	got, err := certs.ParseCerts(append(append([]byte{}, good...), broken...))
	if err == nil {
		t.Errorf("ParseCerts(good, damaged) = %d certificates, no error", len(got))
	}
}

func TestWriteKey(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	path := filepath.Join(dir, "sub", "dir", "agent.key") // parents are made
	if err := certs.WriteKey(path, key); err != nil {
		t.Fatalf("WriteKey: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != certs.KeyFileMode || certs.KeyFileMode != 0o600 {
		t.Errorf("key file mode %o, want 0600", perm)
	}
	got, err := certs.LoadKey(path)
	if err != nil || !equalKeys(key, got) {
		t.Fatalf("LoadKey = %v; want the written key", err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("refuses to overwrite a key", func(t *testing.T) {
		err := certs.WriteKey(path, newKey(t))
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("WriteKey over a key = %v, want fs.ErrExist", err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
			t.Error("existing key file changed")
		}
	})
	t.Run("refuses to overwrite any file", func(t *testing.T) {
		other := filepath.Join(dir, "notes.txt")
		if err := os.WriteFile(other, []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := certs.WriteKey(other, key); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("WriteKey = %v, want fs.ErrExist", err)
		}
		if after, _ := os.ReadFile(other); string(after) != "keep me" {
			t.Errorf("file changed to %q", after)
		}
	})
	t.Run("refuses a dangling symlink", func(t *testing.T) {
		link := filepath.Join(dir, "link.key")
		target := filepath.Join(dir, "target.key")
		if err := os.Symlink(target, link); err != nil {
			t.Skip(err)
		}
		if err := certs.WriteKey(link, key); err == nil {
			t.Error("WriteKey through a dangling symlink succeeded")
		}
		if _, err := os.Stat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("symlink target was created: %v", err)
		}
	})
	t.Run("refuses an unsupported key", func(t *testing.T) {
		p := filepath.Join(dir, "fake.key")
		if err := certs.WriteKey(p, fakeSigner{}); err == nil {
			t.Fatal("WriteKey(fake) succeeded")
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a file was left behind: %v", err)
		}
	})
}

func TestWriteCert(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "acme", t0, 0)
	var chain []*x509.Certificate
	for _, id := range []string{"pc-1", "pc-2"} {
		c, err := ca.IssueAgent(certs.AgentRequest{DeviceID: id, PublicKey: newKey(t).Public(), Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	chain = append(chain, ca.Cert)
	path := filepath.Join(dir, "new", "chain.pem")
	if err := certs.WriteCert(path, chain[0].Raw, chain[1].Raw, chain[2].Raw); err != nil {
		t.Fatalf("WriteCert: %v", err)
	}
	got, err := certs.LoadCerts(path)
	if err != nil {
		t.Fatalf("LoadCerts: %v", err)
	}
	if len(got) != len(chain) {
		t.Fatalf("read %d certificates, want %d", len(got), len(chain))
	}
	for i := range got {
		if !got[i].Equal(chain[i]) {
			t.Errorf("certificate %d is %q, want %q", i, got[i].Subject, chain[i].Subject)
		}
	}
	if err := certs.WriteCert(path, ca.Cert.Raw); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteCert over a file = %v, want fs.ErrExist", err)
	}
	if got, _ := certs.LoadCerts(path); len(got) != len(chain) {
		t.Errorf("after a refused overwrite the file holds %d certificates", len(got))
	}
	if _, err := certs.LoadCerts(filepath.Join(dir, "none.pem")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadCerts(missing) = %v, want fs.ErrNotExist", err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := certs.LoadCerts(empty); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("LoadCerts(empty) = %v, want an error naming the file", err)
	}
}

func TestLoadKeyPair(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "acme", t0, 0)
	key := newKey(t)
	leaf, err := ca.IssueServer(key.Public(), []string{"localhost"}, t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(dir, "server.crt")
	keyFile := filepath.Join(dir, "server.key")
	otherKey := filepath.Join(dir, "other.key")
	if err := certs.WriteCert(crt, leaf.Raw, ca.Cert.Raw); err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	if err := certs.WriteKey(otherKey, newKey(t)); err != nil {
		t.Fatal(err)
	}

	t.Run("matching", func(t *testing.T) {
		pair, err := certs.LoadKeyPair(crt, keyFile)
		if err != nil {
			t.Fatalf("LoadKeyPair: %v", err)
		}
		if len(pair.Certificate) != 2 || !bytes.Equal(pair.Certificate[0], leaf.Raw) || !bytes.Equal(pair.Certificate[1], ca.Cert.Raw) {
			t.Errorf("chain has %d certificates, want leaf and CA", len(pair.Certificate))
		}
		if s, ok := pair.PrivateKey.(crypto.Signer); !ok || !equalKeys(key, s) {
			t.Error("private key is not the written one")
		}
	})
	for _, tt := range []struct {
		name, crt, key string
	}{
		{"mismatched key", crt, otherKey},
		{"missing key", crt, filepath.Join(dir, "none.key")},
		{"key given as cert", keyFile, keyFile},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := certs.LoadKeyPair(tt.crt, tt.key)
			if err == nil {
				t.Fatal("LoadKeyPair succeeded")
			}
			for _, f := range []string{tt.crt, tt.key} {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
		})
	}
}
