package payload_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/payload"
)

var (
	epoch  = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	digest = strings.Repeat("ab", 32)
)

func newSigner(t testing.TB) *payload.Signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := payload.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func entry() payload.Entry {
	return payload.Entry{
		Path: "/patches/KB5031356.msu", SHA256: digest, Size: 20 << 20,
		Sources: []string{"https://cdn.example/KB5031356.msu", payload.Relay},
		Expires: epoch.Add(24 * time.Hour),
	}
}

func sign(t testing.TB, s *payload.Signer, tenant string, e payload.Entry) payload.Signed {
	t.Helper()
	signed, err := s.Sign(tenant, e)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

func TestSignVerify(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	keys := []payload.PublicKey{other.Public(), s.Public()} // a rollover: both current
	good := sign(t, s, "acme", entry())
	if err := payload.Verify(keys, "acme", good.Path, &good, epoch); err != nil {
		t.Fatalf("good entry: %v", err)
	}
	tests := []struct {
		name   string
		tenant string
		path   string
		now    time.Time
		mod    func(*payload.Signed)
		want   error
	}{
		{"other tenant", "globex", good.Path, epoch, nil, payload.ErrBadSignature},
		{"other path", "acme", "/patches/other.msu", epoch, nil, payload.ErrWrongPath},
		{"expired", "acme", good.Path, good.Expires, nil, payload.ErrExpired},
		{"digest changed", "acme", good.Path, epoch, func(s *payload.Signed) { s.SHA256 = strings.Repeat("cd", 32) }, payload.ErrBadSignature},
		{"size changed", "acme", good.Path, epoch, func(s *payload.Signed) { s.Size++ }, payload.ErrBadSignature},
		{"source swapped", "acme", good.Path, epoch, func(s *payload.Signed) { s.Sources[0] = "https://evil.example/x" }, payload.ErrBadSignature},
		{"sources reordered", "acme", good.Path, epoch, func(s *payload.Signed) { s.Sources[0], s.Sources[1] = s.Sources[1], s.Sources[0] }, payload.ErrBadSignature},
		{"expiry extended", "acme", good.Path, epoch, func(s *payload.Signed) { s.Expires = s.Expires.Add(time.Hour) }, payload.ErrBadSignature},
		{"path changed", "acme", "/x", epoch, func(s *payload.Signed) { s.Path = "/x" }, payload.ErrBadSignature},
		{"unknown key", "acme", good.Path, epoch, func(s *payload.Signed) { s.KeyID = "0000000000000000" }, payload.ErrUnknownKey},
		{"signature cut", "acme", good.Path, epoch, func(s *payload.Signed) { s.Signature = s.Signature[:10] }, payload.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := good
			e.Sources = append([]string(nil), good.Sources...)
			e.Signature = append([]byte(nil), good.Signature...)
			if tt.mod != nil {
				tt.mod(&e)
			}
			err := payload.Verify(keys, tt.tenant, tt.path, &e, tt.now)
			if !errors.Is(err, tt.want) || !errors.Is(err, payload.ErrUnverified) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("retired key", func(t *testing.T) {
		if err := payload.Verify([]payload.PublicKey{other.Public()}, "acme", good.Path, &good, epoch); !errors.Is(err, payload.ErrUnknownKey) {
			t.Fatalf("Verify with the key retired = %v, want ErrUnknownKey", err)
		}
	})
}

func TestSignNeedsExpiry(t *testing.T) {
	e := entry()
	e.Expires = time.Time{}
	if _, err := newSigner(t).Sign("acme", e); err == nil {
		t.Fatal("signed an entry without expiry")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*payload.Entry)
		field string // "" when valid
	}{
		{"valid", func(*payload.Entry) {}, ""},
		{"http source", func(e *payload.Entry) { e.Sources = []string{"http://cdn.example/a"} }, ""},
		{"relay only", func(e *payload.Entry) { e.Sources = []string{payload.Relay} }, ""},
		{"relative path", func(e *payload.Entry) { e.Path = "patches/a" }, "path"},
		{"dot dot", func(e *payload.Entry) { e.Path = "/a/../b" }, "path"},
		{"query", func(e *payload.Entry) { e.Path = "/a?b=1" }, "path"},
		{"space", func(e *payload.Entry) { e.Path = "/a b" }, "path"},
		{"short digest", func(e *payload.Entry) { e.SHA256 = "abcd" }, "sha256"},
		{"upper digest", func(e *payload.Entry) { e.SHA256 = strings.ToUpper(digest) }, "sha256"},
		{"non-hex digest", func(e *payload.Entry) { e.SHA256 = strings.Repeat("zz", 32) }, "sha256"},
		{"zero size", func(e *payload.Entry) { e.Size = 0 }, "size"},
		{"no sources", func(e *payload.Entry) { e.Sources = nil }, "sources"},
		{"ftp", func(e *payload.Entry) { e.Sources = []string{"ftp://cdn.example/a"} }, "sources[0]"},
		{"credentials", func(e *payload.Entry) { e.Sources = []string{"https://u:p@cdn.example/a"} }, "sources[0]"},
		{"fragment", func(e *payload.Entry) { e.Sources = []string{"https://cdn.example/a#x"} }, "sources[0]"},
		{"no host", func(e *payload.Entry) { e.Sources = []string{"https:///a"} }, "sources[0]"},
		{"twice", func(e *payload.Entry) { e.Sources = []string{payload.Relay, payload.Relay} }, "sources[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := entry()
			tt.mod(&e)
			err := e.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var fe *payload.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Validate = %v, want an error on %s", err, tt.field)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	s := newSigner(t)
	a := sign(t, s, "acme", entry())
	b := entry()
	b.Path = "/patches/b.msu"
	cat := &payload.Catalog{Entries: []payload.Signed{a, sign(t, s, "acme", b)},
		Relay: payload.RelayPolicy{PathPrefixes: []string{"/downloads/"}, SizeThreshold: 8 << 20}}
	ix, err := payload.NewIndex(cat)
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 2 || ix.Lookup(a.Path) == nil || ix.Lookup("/patches/") != nil {
		t.Fatalf("index holds %d entries; lookup of %s = %v", ix.Len(), a.Path, ix.Lookup(a.Path))
	}
	if !ix.Policy().IsPayloadPath("/downloads/x.cab") || ix.Policy().IsPayloadPath("/api/policy") {
		t.Fatal("relay policy does not classify by prefix")
	}
	cat.Entries = append(cat.Entries, a)
	if _, err := payload.NewIndex(cat); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate path: %v", err)
	}
	unsigned := &payload.Catalog{Entries: []payload.Signed{{Entry: entry()}}}
	if _, err := payload.NewIndex(unsigned); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned entry: %v", err)
	}
}
