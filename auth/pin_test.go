package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
)

// selfSigned makes a minimal self-signed certificate for key.
func selfSigned(t testing.TB, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "pin test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestPinOfMatchesPinOfCert(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := []struct {
		name string
		key  crypto.Signer
	}{
		{"ecdsa p256", ec},
		{"ecdsa p384", ec384},
		{"rsa 2048", rsaKey},
		{"ed25519", edKey},
	}
	seen := map[auth.Pin]string{}
	for _, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			cert := selfSigned(t, k.key)
			p, err := auth.PinOf(k.key.Public())
			if err != nil {
				t.Fatalf("PinOf: %v", err)
			}
			if pc := auth.PinOfCert(cert); pc != p {
				t.Errorf("PinOf = %v, PinOfCert = %v; want equal", p, pc)
			}
			// The pin is the SHA-256 of the SPKI, independently computed.
			spki, err := x509.MarshalPKIXPublicKey(k.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			if want := auth.Pin(sha256.Sum256(spki)); p != want {
				t.Errorf("PinOf = %v, want sha256(SPKI) = %v", p, want)
			}
			// A second certificate for the same key has the same pin.
			if pc := auth.PinOfCert(selfSigned(t, k.key)); pc != p {
				t.Errorf("second certificate pin = %v, want %v", pc, p)
			}
			if other, dup := seen[p]; dup {
				t.Errorf("pin %v also belongs to %s", p, other)
			}
			seen[p] = k.name
		})
	}
}

func TestPinOfRefusesNonKey(t *testing.T) {
	for _, pub := range []crypto.PublicKey{nil, "not a key", struct{}{}} {
		if p, err := auth.PinOf(pub); err == nil {
			t.Errorf("PinOf(%T) = %v, want an error", pub, p)
		}
	}
}

func TestPinText(t *testing.T) {
	var seq auth.Pin
	for i := range seq {
		seq[i] = byte(i)
	}
	var high auth.Pin
	for i := range high {
		high[i] = 0xfb // encodes as "+/"-rich base64
	}
	tests := []struct {
		name string
		pin  auth.Pin
		text string
	}{
		{"zero", auth.Pin{}, "sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"sequence", seq, "sha256/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
		{"high bytes", high, "sha256/" + base64.StdEncoding.EncodeToString(high[:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.pin.String(); got != tt.text {
				t.Fatalf("String() = %q, want %q", got, tt.text)
			}
			p, err := auth.ParsePin(tt.text)
			if err != nil || p != tt.pin {
				t.Fatalf("ParsePin(%q) = %v, %v; want %v", tt.text, p, err, tt.pin)
			}
			b, err := tt.pin.MarshalText()
			if err != nil || string(b) != tt.text {
				t.Fatalf("MarshalText = %q, %v; want %q", b, err, tt.text)
			}
			var q auth.Pin
			if err := q.UnmarshalText(b); err != nil || q != tt.pin {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", b, q, err, tt.pin)
			}
			// Config files carry pins as strings through TextMarshaler.
			type cfg struct {
				Pins []auth.Pin `json:"pins"`
			}
			js, err := json.Marshal(cfg{Pins: []auth.Pin{tt.pin}})
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"pins":["` + tt.text + `"]}`; string(js) != want {
				t.Fatalf("json = %s, want %s", js, want)
			}
			var back cfg
			if err := json.Unmarshal(js, &back); err != nil || len(back.Pins) != 1 || back.Pins[0] != tt.pin {
				t.Fatalf("json round trip = %v, %v", back.Pins, err)
			}
		})
	}
}

func TestParsePinRefuses(t *testing.T) {
	var high auth.Pin
	for i := range high {
		high[i] = 0xfb
	}
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, n)) }
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"prefix only", "sha256/"},
		{"no prefix", b64(32)},
		{"uppercase prefix", "SHA256/" + b64(32)},
		{"other hash", "sha1/" + b64(32)},
		{"colon separator", "sha256:" + b64(32)},
		{"bad base64", "sha256/!!!!" + b64(32)[4:]},
		{"url-safe alphabet", "sha256/" + base64.URLEncoding.EncodeToString(high[:])},
		{"unpadded", "sha256/" + base64.RawStdEncoding.EncodeToString(high[:])},
		{"hex", "sha256/" + strings.Repeat("ab", 32)},
		{"31 bytes", "sha256/" + b64(31)},
		{"33 bytes", "sha256/" + b64(33)},
		{"64 bytes", "sha256/" + b64(64)},
		{"leading space", " sha256/" + b64(32)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, err := auth.ParsePin(tt.in); err == nil {
				t.Fatalf("ParsePin(%q) = %v, want an error", tt.in, p)
			}
			// A refused text leaves the old value in place.
			old := auth.Pin{1, 2, 3}
			p := old
			if err := p.UnmarshalText([]byte(tt.in)); err == nil {
				t.Fatalf("UnmarshalText(%q) succeeded", tt.in)
			}
			if p != old {
				t.Errorf("UnmarshalText(%q) changed the pin to %v", tt.in, p)
			}
		})
	}
}

func FuzzParsePin(f *testing.F) {
	f.Add("sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Add("sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=")
	f.Add("sha256/AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
	f.Add("sha256/")
	f.Add("sha256/====")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := auth.ParsePin(s)
		if err != nil {
			return
		}
		text := p.String()
		if !strings.HasPrefix(text, "sha256/") || len(text) != len("sha256/")+44 {
			t.Fatalf("String() = %q: want sha256/ and 44 base64 characters", text)
		}
		q, err := auth.ParsePin(text)
		if err != nil || q != p {
			t.Fatalf("ParsePin(String()) of %q = %v, %v; want %v", s, q, err, p)
		}
	})
}
