package payload_test

import (
	"errors"
	"net/http"
	"testing"

	"github.com/sekisho/sekisho/payload"
)

func TestRedirectHeaders(t *testing.T) {
	s := newSigner(t)
	e := entry()
	e.Sources = []string{"https://cdn.example/a", "https://mirror.example/a,b", payload.Relay}
	signed := sign(t, s, "acme", e)
	h := http.Header{}
	payload.WriteRedirect(h, &signed)
	if !payload.IsRedirect(http.StatusTemporaryRedirect, h) || payload.IsRedirect(http.StatusOK, h) {
		t.Fatal("IsRedirect does not recognise the redirect")
	}
	got, err := payload.ParseRedirect(h, signed.Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := payload.Verify([]payload.PublicKey{s.Public()}, "acme", signed.Path, got, epoch); err != nil {
		t.Fatalf("parsed redirect does not verify: %v (headers %v)", err, h)
	}
	if len(got.Sources) != 3 || got.Sources[1] != "https://mirror.example/a,b" {
		t.Fatalf("sources = %q", got.Sources)
	}

	tests := []struct {
		name string
		mod  func(http.Header)
	}{
		{"no size", func(h http.Header) { h.Del(payload.HeaderSize) }},
		{"bad size", func(h http.Header) { h.Set(payload.HeaderSize, "12x") }},
		{"bad expiry", func(h http.Header) { h.Set(payload.HeaderExpires, "tomorrow") }},
		{"no key", func(h http.Header) { h.Del(payload.HeaderKeyID) }},
		{"bad signature", func(h http.Header) { h.Set(payload.HeaderSignature, "%%%") }},
		{"bad digest", func(h http.Header) { h.Set(payload.HeaderSHA256, "00") }},
		{"no sources", func(h http.Header) { h.Del(payload.HeaderSource) }},
		{"location elsewhere", func(h http.Header) { h.Set("Location", "https://evil.example/a") }},
		{"relay first", func(h http.Header) {
			h.Del(payload.HeaderSource)
			h.Add(payload.HeaderSource, payload.Relay)
			h.Set("Location", payload.Relay)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.Clone()
			tt.mod(h)
			if _, err := payload.ParseRedirect(h, signed.Path); !errors.Is(err, payload.ErrMalformed) {
				t.Fatalf("ParseRedirect = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestStripHeaders(t *testing.T) {
	h := http.Header{}
	signed := sign(t, newSigner(t), "acme", entry())
	payload.WriteRedirect(h, &signed)
	payload.StripHeaders(h)
	for k := range h {
		if len(k) >= len(payload.HeaderPrefix) && k[:len(payload.HeaderPrefix)] == payload.HeaderPrefix {
			t.Fatalf("%s left", k)
		}
	}
	if h.Get("Location") == "" {
		t.Fatal("stripped more than the payload headers")
	}
}

// FuzzParseRedirect feeds the parser headers a gateway could send.
func FuzzParseRedirect(f *testing.F) {
	f.Add("3", "2026-12-05T12:00:00Z", "https://cdn.example/a", "k1", "c2ln", "/a")
	f.Add("-1", "", "relay", "", "", "")
	f.Fuzz(func(t *testing.T, size, expires, source, key, sig, path string) {
		h := http.Header{}
		h.Set(payload.HeaderSHA256, digest)
		h.Set(payload.HeaderSize, size)
		h.Set(payload.HeaderExpires, expires)
		h.Add(payload.HeaderSource, source)
		h.Set("Location", source)
		h.Set(payload.HeaderKeyID, key)
		h.Set(payload.HeaderSignature, sig)
		s, err := payload.ParseRedirect(h, path)
		if err != nil {
			return
		}
		if s.Validate() != nil || s.Size <= 0 || s.Sources[0] != source {
			t.Fatalf("accepted an invalid entry: %+v", s)
		}
	})
}
