package auth_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"testing/iotest"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/sekisho/sekisho/auth"
)

// countingBytes returns n bytes 0, 1, 2, ...
func countingBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// counting is a predictable "random" source of n bytes.
func counting(n int) *bytes.Reader { return bytes.NewReader(countingBytes(n)) }

// The text format is pinned: gateways and connectors of different versions
// must agree on it.
func TestNewTokenGolden(t *testing.T) {
	tok, err := auth.NewToken("acme", counting(auth.TokenIDLen+auth.TokenSecretLen))
	if err != nil {
		t.Fatal(err)
	}
	const want = "sek1_acme_aaaqeayeaudaocaj_bifqydiob4ibceqtcqkrmfyydenbwha5_q5y4qhy"
	if tok.Text != want {
		t.Fatalf("Text = %q, want %q", tok.Text, want)
	}
	if tok.Tenant != "acme" || tok.ID != "aaaqeayeaudaocaj" || !bytes.Equal(tok.Secret, countingBytes(30)[10:]) {
		t.Errorf("parts = %q %q %x", tok.Tenant, tok.ID, tok.Secret)
	}
}

func TestTokenRoundTrip(t *testing.T) {
	for _, tenant := range []string{"a", "acme", "acme-corp-2", strings.Repeat("t", 63)} {
		tok, err := auth.NewToken(tenant, nil)
		if err != nil {
			t.Fatalf("NewToken(%q): %v", tenant, err)
		}
		if len(tok.Text) > auth.MaxTokenLen {
			t.Errorf("token of %d characters, MaxTokenLen is %d", len(tok.Text), auth.MaxTokenLen)
		}
		p, err := auth.ParseToken(tok.Text)
		if err != nil {
			t.Fatalf("ParseToken(NewToken(%q)): %v", tenant, err)
		}
		if p.Tenant != tok.Tenant || p.ID != tok.ID || !bytes.Equal(p.Secret, tok.Secret) {
			t.Errorf("ParseToken = %v, want %v", p, tok.TokenParts)
		}
		if !p.Matches(tok.Hash()) {
			t.Error("parsed token does not match its own hash")
		}
	}
}

func TestNewTokenRefuses(t *testing.T) {
	if _, err := auth.NewToken("Acme", nil); err == nil {
		t.Error("NewToken accepted an invalid tenant")
	}
	if _, err := auth.NewToken("acme", counting(12)); err == nil {
		t.Error("NewToken accepted a short read of random bytes")
	}
	if _, err := auth.NewToken("acme", iotest.ErrReader(errors.New("no entropy"))); err == nil {
		t.Error("NewToken ignored a failing random source")
	}
}

func TestParseTokenRefuses(t *testing.T) {
	good, err := auth.NewToken("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(good.Text, "_") // sek1 acme ID SECRET CHECK
	tests := []struct{ name, text string }{
		{"empty", ""},
		{"prefix only", "sek1_"},
		{"other version", "sek2" + strings.TrimPrefix(good.Text, "sek1")},
		{"upper case", strings.ToUpper(good.Text)},
		{"no checksum", strings.Join(f[:4], "_")},
		{"extra field", good.Text + "_x"},
		{"trailing newline", good.Text + "\n"},
		{"leading space", " " + good.Text},
		{"short secret", strings.Join([]string{f[0], f[1], f[2], f[3][1:], f[4]}, "_")},
		{"id and secret swapped", strings.Join([]string{f[0], f[1], f[3], f[2], f[4]}, "_")},
		{"too long", good.Text + strings.Repeat("a", auth.MaxTokenLen)},
		{"tenant with underscore", "sek1_ac_me_" + strings.Join(f[2:], "_")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.ParseToken(tt.text)
			if !errors.Is(err, auth.ErrTokenMalformed) {
				t.Fatalf("ParseToken = %v, want ErrTokenMalformed", err)
			}
			if strings.Contains(err.Error(), f[3]) {
				t.Errorf("error quotes the secret: %v", err)
			}
		})
	}
}

// CRC-32C catches every change of one character, so a mistyped token is
// dropped at the gateway.
func TestParseTokenCatchesEveryTypo(t *testing.T) {
	tok, err := auth.NewToken("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	const chars = "abcdefghijklmnopqrstuvwxyz234567_-0189ABZ"
	for i := range len(tok.Text) {
		for _, c := range []byte(chars) {
			if tok.Text[i] == c {
				continue
			}
			typo := tok.Text[:i] + string(c) + tok.Text[i+1:]
			if _, err := auth.ParseToken(typo); err == nil {
				t.Fatalf("ParseToken accepted %q (character %d changed)", typo, i)
			}
		}
	}
}

func TestTokenHash(t *testing.T) {
	tok, err := auth.NewToken("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := tok.Hash()
	if len(h) != 32 {
		t.Fatalf("hash of %d bytes", len(h))
	}
	variants := map[string]auth.TokenParts{
		"other tenant": {Tenant: "acme2", ID: tok.ID, Secret: tok.Secret},
		"other id":     {Tenant: "acme", ID: strings.Repeat("a", 16), Secret: tok.Secret},
		"other secret": {Tenant: "acme", ID: tok.ID, Secret: append([]byte{tok.Secret[0] ^ 1}, tok.Secret[1:]...)},
	}
	for name, p := range variants {
		if p.Matches(h) {
			t.Errorf("%s matches the hash", name)
		}
	}
	if !tok.Matches(h) {
		t.Error("token does not match its hash")
	}
}

// Neither fmt nor zap shows a token's secret.
func TestTokenNotLogged(t *testing.T) {
	tok, err := auth.NewToken("acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	secretText := strings.Split(tok.Text, "_")[3]
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(core)
	log.Info("token", zap.Any("token", tok), zap.Any("parts", tok.TokenParts), zap.Stringer("s", tok))
	var out []string
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			out = append(out, fmt.Sprint(v))
		}
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		out = append(out, fmt.Sprintf(format, tok), fmt.Sprintf(format, tok.TokenParts))
	}
	for _, s := range out {
		if strings.Contains(s, secretText) || strings.Contains(s, fmt.Sprint(tok.Secret)) {
			t.Errorf("secret shown: %s", s)
		}
		if !strings.Contains(s, tok.ID) {
			t.Errorf("id not shown: %s", s)
		}
	}
}

func TestTokenReason(t *testing.T) {
	_, malformed := auth.ParseToken("nope")
	tests := map[error]string{
		nil:                                      "ok",
		malformed:                                "token_malformed",
		fmt.Errorf("x: %w", auth.ErrTokenUsedUp): "token_used_up",
		auth.ErrTokenUnknown:                     "token_unknown",
		auth.ErrTokenMismatch:                    "token_mismatch",
		auth.ErrTokenExpired:                     "token_expired",
		errors.New("disk on fire"):               "other",
	}
	for err, want := range tests {
		if got := auth.TokenReason(err); got != want {
			t.Errorf("TokenReason(%v) = %q, want %q", err, got, want)
		}
	}
}

// formatToken writes parts as the format in token.go describes, written
// again here from the description so that the test checks the code.
func formatToken(p auth.TokenParts) string {
	enc := base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	idBytes, _ := enc.DecodeString(p.ID)
	body := "sek1_" + p.Tenant + "_" + enc.EncodeToString(idBytes) + "_" + enc.EncodeToString(p.Secret)
	sum := binary.BigEndian.AppendUint32(nil, crc32.Checksum([]byte(body), crc32.MakeTable(crc32.Castagnoli)))
	return body + "_" + enc.EncodeToString(sum)
}

func FuzzParseToken(f *testing.F) {
	tok, _ := auth.NewToken("acme", counting(30))
	f.Add(tok.Text)
	long, _ := auth.NewToken(strings.Repeat("t", 63), rand.Reader)
	f.Add(long.Text)
	f.Add("sek1_acme_aaaa_bbbb_cccc")
	f.Add("sek1____")
	f.Add("sek1_" + strings.Repeat("_", 200))
	f.Fuzz(func(t *testing.T, s string) {
		p, err := auth.ParseToken(s)
		if err != nil {
			if !errors.Is(err, auth.ErrTokenMalformed) {
				t.Fatalf("error %v does not wrap ErrTokenMalformed", err)
			}
			if p.Tenant != "" || p.ID != "" || p.Secret != nil {
				t.Fatalf("parts %#v returned with an error", p)
			}
			return
		}
		// Accepted text is the one spelling of its parts.
		if got := formatToken(p); got != s {
			t.Fatalf("ParseToken(%q) = %#v, which formats as %q", s, p, got)
		}
		if auth.ValidTenant(p.Tenant) != nil || auth.ValidTokenID(p.ID) != nil || len(p.Secret) != auth.TokenSecretLen {
			t.Fatalf("ParseToken(%q) returned invalid parts", s)
		}
	})
}
