package payload

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Relay is the source that means "through the tunnel, from the core".
const Relay = "relay"

// Limits of an entry.
const (
	MaxPathLen  = 1024
	MaxSources  = 8
	MaxURLLen   = 2048
	MaxSize     = 1 << 40 // 1 TiB
	digestChars = 2 * sha256.Size
)

// Entry is one catalogued payload: the exact request path it answers, the
// expected SHA-256 and size, and where to download it, in order of
// preference. Every field is covered by the signature.
type Entry struct {
	Path    string    `json:"path"`
	SHA256  string    `json:"sha256"` // lowercase hex
	Size    int64     `json:"size"`
	Sources []string  `json:"sources"` // http(s) URLs or Relay
	Expires time.Time `json:"expires"` // zero: not yet set (a signed entry always has one)
}

// FieldError names the field of an entry that is wrong.
type FieldError struct {
	Field string // "path", "sha256", "sources[1]", ...
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

func fieldf(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks an entry's fields and returns every problem found, each
// a *FieldError.
func (e *Entry) Validate() error {
	var errs []error
	if err := ValidPath(e.Path); err != nil {
		errs = append(errs, &FieldError{"path", err})
	}
	if len(e.SHA256) != digestChars || strings.ToLower(e.SHA256) != e.SHA256 || !isHex(e.SHA256) {
		errs = append(errs, fieldf("sha256", "want %d lowercase hex digits", digestChars))
	}
	if e.Size <= 0 || e.Size > MaxSize {
		errs = append(errs, fieldf("size", "want 1 to %d bytes, got %d", int64(MaxSize), e.Size))
	}
	errs = append(errs, validSources(e.Sources)...)
	return errors.Join(errs...)
}

// ValidPath checks that p is an absolute, clean request path without
// query or fragment: entries match exact paths only.
func ValidPath(p string) error {
	switch {
	case p == "" || p[0] != '/':
		return errors.New("must start with /")
	case len(p) > MaxPathLen:
		return fmt.Errorf("longer than %d bytes", MaxPathLen)
	case strings.ContainsAny(p, "?#\\"):
		return errors.New("must not contain ?, # or \\ (exact paths only)")
	}
	for _, r := range p {
		if r < 0x21 || r == 0x7f {
			return errors.New("must not contain spaces or control characters")
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "." || seg == ".." {
			return errors.New("must not contain . or .. segments")
		}
	}
	return nil
}

func validSources(sources []string) []error {
	if len(sources) == 0 || len(sources) > MaxSources {
		return []error{fieldf("sources", "want 1 to %d sources, got %d", MaxSources, len(sources))}
	}
	var errs []error
	seen := map[string]bool{}
	for i, s := range sources {
		field := fmt.Sprintf("sources[%d]", i)
		if seen[s] {
			errs = append(errs, fieldf(field, "%q listed twice", s))
			continue
		}
		seen[s] = true
		if s == Relay {
			continue
		}
		if err := validURL(s); err != nil {
			errs = append(errs, &FieldError{field, err})
		}
	}
	return errs
}

// validURL accepts absolute http and https URLs without credentials or
// fragment. Plain http is allowed: the digest, not the transport, makes a
// payload trustworthy, and some vendor CDNs serve only http.
func validURL(s string) error {
	if len(s) > MaxURLLen {
		return fmt.Errorf("URL longer than %d bytes", MaxURLLen)
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("not a URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("want an http or https URL or %q, got %q", Relay, s)
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("URL %q has no host", s)
	case u.User != nil:
		return errors.New("URL must not carry credentials")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("URL must not have a fragment")
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return errors.New("URL must not contain spaces or control characters")
		}
	}
	return nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// HasRelay reports whether the entry lets the payload cross the tunnel.
func (e *Entry) HasRelay() bool {
	for _, s := range e.Sources {
		if s == Relay {
			return true
		}
	}
	return false
}

// Signed is an entry with its signature.
type Signed struct {
	Entry
	KeyID     string `json:"key_id"`
	Signature []byte `json:"signature"` // Ed25519, base64 in JSON
}

// signedMessage is what a signature covers, in this order: the tenant (so
// one tenant's entry is worthless to another) and every field of the
// entry, the expiry in Unix seconds.
type signedMessage struct {
	Tenant  string   `json:"tenant"`
	Path    string   `json:"path"`
	SHA256  string   `json:"sha256"`
	Size    int64    `json:"size"`
	Sources []string `json:"sources"`
	Expires int64    `json:"expires"`
}

const messagePrefix = "sekisho payload entry v1\n"

// message returns the bytes an entry's signature covers.
func (e *Entry) message(tenant string) []byte {
	body, _ := json.Marshal(signedMessage{ // cannot fail: strings and integers
		Tenant: tenant, Path: e.Path, SHA256: e.SHA256, Size: e.Size, Sources: e.Sources, Expires: e.Expires.Unix(),
	})
	return append([]byte(messagePrefix), body...)
}

// PublicKey is one of a tenant's catalog verification keys.
type PublicKey struct {
	ID  string
	Key ed25519.PublicKey
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Signer signs a tenant's catalog entries.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner returns a signer for an Ed25519 private key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("catalog signing key: want an Ed25519 private key, got %d bytes", len(key))
	}
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}, nil
}

// Public returns the signer's public key.
func (s *Signer) Public() PublicKey {
	return PublicKey{ID: s.id, Key: s.key.Public().(ed25519.PublicKey)}
}

// Sign signs e for tenant. e must be valid and carry its expiry, which is
// truncated to the second.
func (s *Signer) Sign(tenant string, e Entry) (Signed, error) {
	if err := e.Validate(); err != nil {
		return Signed{}, err
	}
	if e.Expires.IsZero() {
		return Signed{}, fieldf("expires", "a signed entry needs an expiry")
	}
	e.Expires = e.Expires.Truncate(time.Second).UTC()
	return Signed{Entry: e, KeyID: s.id, Signature: ed25519.Sign(s.key, e.message(tenant))}, nil
}

// Verification errors; each wraps ErrUnverified.
var (
	ErrUnverified   = errors.New("payload redirect not verified")
	ErrUnknownKey   = fmt.Errorf("%w: signed with a key the agent does not hold", ErrUnverified)
	ErrBadSignature = fmt.Errorf("%w: signature does not match the entry", ErrUnverified)
	ErrExpired      = fmt.Errorf("%w: entry expired", ErrUnverified)
	ErrWrongPath    = fmt.Errorf("%w: entry is for another path", ErrUnverified)
)

// Verify checks that s was signed for tenant by one of keys, answers the
// request path, and has not expired at now.
func Verify(keys []PublicKey, tenant, path string, s *Signed, now time.Time) error {
	var key ed25519.PublicKey
	for _, k := range keys {
		if k.ID == s.KeyID {
			key = k.Key
		}
	}
	switch {
	case key == nil:
		return fmt.Errorf("%w (key id %q)", ErrUnknownKey, s.KeyID)
	case !ed25519.Verify(key, s.message(tenant), s.Signature):
		return ErrBadSignature
	case s.Path != path:
		return fmt.Errorf("%w: signed for %q, requested %q", ErrWrongPath, s.Path, path)
	case !now.Before(s.Expires):
		return fmt.Errorf("%w at %s", ErrExpired, s.Expires.Format(time.RFC3339))
	}
	return s.Validate()
}
