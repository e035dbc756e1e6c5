package auth

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// Pin is the SHA-256 of a public key's DER SubjectPublicKeyInfo. Its text
// form is "sha256/" followed by standard base64, as in HPKP and curl's
// --pinnedpubkey.
type Pin [sha256.Size]byte

const pinPrefix = "sha256/"

// PinOf returns the pin of a public key.
func PinOf(pub crypto.PublicKey) (Pin, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Pin{}, fmt.Errorf("marshal public key: %w", err)
	}
	return sha256.Sum256(der), nil
}

// PinOfCert returns the pin of a certificate's public key.
func PinOfCert(cert *x509.Certificate) Pin {
	return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
}

// ParsePin parses the text form "sha256/BASE64".
func ParsePin(s string) (Pin, error) {
	b64, ok := strings.CutPrefix(s, pinPrefix)
	if !ok {
		return Pin{}, fmt.Errorf("pin %q: want sha256/BASE64", s)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Pin{}, fmt.Errorf("pin %q: %w", s, err)
	}
	if len(raw) != sha256.Size {
		return Pin{}, fmt.Errorf("pin %q: want %d bytes, got %d", s, sha256.Size, len(raw))
	}
	return Pin(raw), nil
}

// String returns the text form of p.
func (p Pin) String() string {
	return pinPrefix + base64.StdEncoding.EncodeToString(p[:])
}

// MarshalText implements encoding.TextMarshaler.
func (p Pin) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (p *Pin) UnmarshalText(b []byte) error {
	q, err := ParsePin(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}
