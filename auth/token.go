package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
)

// An enrollment token's text is
//
//	sek1_TENANT_ID_SECRET_CHECK
//
// where TENANT is the tenant name (a DNS label, so it holds no '_'), ID is
// TokenIDLen random bytes and SECRET TokenSecretLen random bytes, both in
// unpadded lowercase base32 (RFC 4648 alphabet), and CHECK is the CRC-32C of
// everything before its '_' as 4 big-endian bytes in the same base32 (7
// characters). For example:
//
//	sek1_acme_aaaqeayeaudaocaj_bifqydiob4ibceqtcqkrmfyydenbwha5_q5y4qhy
//
// The gateway reads the tenant to route a certificate-less enrollment with no
// database, and drops mistyped or random text by its checksum; the checksum
// is no secret and proves nothing. The ID is a public handle that logs and
// the audit trail may name; only the SECRET is secret, and the registry keeps
// nothing but its hash (TokenParts.Hash).
const (
	tokenPrefix = "sek1_"
	// TokenIDLen is the length in bytes of a token's id.
	TokenIDLen = 10
	// TokenSecretLen is the length in bytes of a token's secret: 160 bits.
	TokenSecretLen = 20

	tokenIDChars     = TokenIDLen * 8 / 5     // 16
	tokenSecretChars = TokenSecretLen * 8 / 5 // 32
	tokenCheckChars  = 7                      // 32 bits, 3 zero bits of padding
	// MaxTokenLen is the length of the longest token text (a 63-character
	// tenant name): callers may refuse longer input before parsing it.
	MaxTokenLen = len(tokenPrefix) + 63 + 1 + tokenIDChars + 1 + tokenSecretChars + 1 + tokenCheckChars
)

var (
	tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	castagnoli    = crc32.MakeTable(crc32.Castagnoli)
)

// ErrTokenMalformed means text is not an enrollment token: wrong shape,
// wrong prefix or a bad checksum. Errors that wrap it never quote the text,
// which may be a real token with a typo.
var ErrTokenMalformed = errors.New("malformed enrollment token")

// TokenParts is what a token's text carries.
type TokenParts struct {
	Tenant string
	// ID names the token in the registry, logs and audit trail.
	ID string
	// Secret is TokenSecretLen random bytes. Never log it.
	Secret []byte
}

// Token is a freshly minted enrollment token.
type Token struct {
	TokenParts
	// Text is the whole token, to be shown once to the operator who made it.
	// Never log it.
	Text string
}

// NewToken mints a token for tenant from random (crypto/rand when nil).
func NewToken(tenant string, random io.Reader) (Token, error) {
	if err := ValidTenant(tenant); err != nil {
		return Token{}, err
	}
	if random == nil {
		random = rand.Reader
	}
	var b [TokenIDLen + TokenSecretLen]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return Token{}, fmt.Errorf("read random token: %w", err)
	}
	p := TokenParts{
		Tenant: tenant,
		ID:     tokenEncoding.EncodeToString(b[:TokenIDLen]),
		Secret: b[TokenIDLen:],
	}
	body := tokenPrefix + tenant + "_" + p.ID + "_" + tokenEncoding.EncodeToString(p.Secret)
	return Token{TokenParts: p, Text: body + "_" + tokenCheck(body)}, nil
}

// ParseToken checks a token's syntax and checksum and returns its parts. It
// needs no registry: the gateway uses it to route an enrollment, and the
// registry's Store.UseToken decides whether the token is good.
func ParseToken(s string) (TokenParts, error) {
	if len(s) > MaxTokenLen {
		return TokenParts{}, fmt.Errorf("%w: longer than %d characters", ErrTokenMalformed, MaxTokenLen)
	}
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return TokenParts{}, fmt.Errorf("%w: does not start with %q", ErrTokenMalformed, tokenPrefix)
	}
	fields := strings.Split(rest, "_")
	if len(fields) != 4 {
		return TokenParts{}, fmt.Errorf("%w: want 4 fields after %q, got %d", ErrTokenMalformed, tokenPrefix, len(fields))
	}
	tenant, id, secret, check := fields[0], fields[1], fields[2], fields[3]
	if len(id) != tokenIDChars || len(secret) != tokenSecretChars || len(check) != tokenCheckChars {
		return TokenParts{}, fmt.Errorf("%w: id, secret or checksum of the wrong length", ErrTokenMalformed)
	}
	if check != tokenCheck(s[:len(s)-len(check)-1]) {
		return TokenParts{}, fmt.Errorf("%w: bad checksum", ErrTokenMalformed)
	}
	if err := ValidTenant(tenant); err != nil {
		return TokenParts{}, fmt.Errorf("%w: %w", ErrTokenMalformed, err)
	}
	if _, err := decodeCanonical(id, TokenIDLen); err != nil {
		return TokenParts{}, fmt.Errorf("%w: id: %w", ErrTokenMalformed, err)
	}
	raw, err := decodeCanonical(secret, TokenSecretLen)
	if err != nil {
		return TokenParts{}, fmt.Errorf("%w: secret: %w", ErrTokenMalformed, err)
	}
	return TokenParts{Tenant: tenant, ID: id, Secret: raw}, nil
}

// ValidTokenID reports whether s can be a token's id.
func ValidTokenID(s string) error {
	if _, err := decodeCanonical(s, TokenIDLen); err != nil {
		return fmt.Errorf("token id %q: %w", s, err)
	}
	return nil
}

// decodeCanonical decodes s, which must be the one spelling of n bytes.
func decodeCanonical(s string, n int) ([]byte, error) {
	if len(s) != tokenEncoding.EncodedLen(n) {
		return nil, fmt.Errorf("want %d base32 characters", tokenEncoding.EncodedLen(n))
	}
	b, err := tokenEncoding.DecodeString(s)
	if err != nil || len(b) != n || tokenEncoding.EncodeToString(b) != s {
		return nil, errors.New("not lowercase base32")
	}
	return b, nil
}

func tokenCheck(body string) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc32.Checksum([]byte(body), castagnoli))
	return tokenEncoding.EncodeToString(b[:])
}

// Hash returns what the registry keeps of a token: SHA-256 over a label, the
// tenant, the id (as salt) and the secret. The secret is random, so a plain
// salted hash is enough; no slow KDF is needed.
func (p TokenParts) Hash() []byte {
	h := sha256.New()
	h.Write([]byte("sekisho enrollment token v1\x00"))
	h.Write([]byte(p.Tenant))
	h.Write([]byte{0})
	h.Write([]byte(p.ID))
	h.Write([]byte{0})
	h.Write(p.Secret)
	return h.Sum(nil)
}

// Matches reports, in constant time, whether p's secret hashes to hash.
func (p TokenParts) Matches(hash []byte) bool {
	return subtle.ConstantTimeCompare(p.Hash(), hash) == 1
}

// String returns the token without its secret, for logs:
// "sek1_TENANT_ID_…".
func (p TokenParts) String() string {
	return tokenPrefix + p.Tenant + "_" + p.ID + "_…"
}

// GoString keeps the secret out of %#v as well.
func (p TokenParts) GoString() string { return fmt.Sprintf("auth.TokenParts(%q)", p.String()) }

// String returns the token without its secret (see TokenParts.String).
func (t Token) String() string { return t.TokenParts.String() }

// GoString keeps the secret out of %#v as well.
func (t Token) GoString() string { return fmt.Sprintf("auth.Token(%q)", t.String()) }

// TokenReason returns a short label for an error from ParseToken or
// Store.UseToken, for the audit log and metrics. The enrolling client is
// only ever told that its token was refused.
func TokenReason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTokenMalformed):
		return "token_malformed"
	case errors.Is(err, ErrTokenUnknown):
		return "token_unknown"
	case errors.Is(err, ErrTokenMismatch):
		return "token_mismatch"
	case errors.Is(err, ErrTokenExpired):
		return "token_expired"
	case errors.Is(err, ErrTokenUsedUp):
		return "token_used_up"
	default:
		return "other"
	}
}
