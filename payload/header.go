package payload

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Headers of a payload redirect. They describe the payload the redirect
// points at, not the redirect's own body (which Repr-Digest would).
// HeaderSource is repeated, once per source, in order of preference; the
// Location is the first of them.
const (
	HeaderPrefix    = "Sekisho-Payload-"
	HeaderSHA256    = "Sekisho-Payload-Sha256"
	HeaderSize      = "Sekisho-Payload-Size"
	HeaderSource    = "Sekisho-Payload-Source"
	HeaderExpires   = "Sekisho-Payload-Expires" // RFC 3339, UTC
	HeaderKeyID     = "Sekisho-Payload-Key-Id"
	HeaderSignature = "Sekisho-Payload-Signature" // base64
)

// WriteRedirect sets the headers of a redirect to s's first source. The
// caller writes the status (307: the method stays GET or HEAD).
func WriteRedirect(h http.Header, s *Signed) {
	h.Set("Location", s.Sources[0])
	WriteEntry(h, s)
}

// WriteEntry sets the headers that carry a signed entry (on a relayed
// payload, whose bytes the agent verifies like a CDN's).
func WriteEntry(h http.Header, s *Signed) {
	h.Set(HeaderSHA256, s.SHA256)
	h.Set(HeaderSize, strconv.FormatInt(s.Size, 10))
	h.Del(HeaderSource)
	for _, src := range s.Sources {
		h.Add(HeaderSource, src)
	}
	h.Set(HeaderExpires, s.Expires.UTC().Format(time.RFC3339))
	h.Set(HeaderKeyID, s.KeyID)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(s.Signature))
	h.Set("Cache-Control", "no-store")
}

// IsRedirect reports whether a response is a payload redirect: a 3xx that
// carries a payload signature.
func IsRedirect(status int, h http.Header) bool {
	return status >= 300 && status < 400 && h.Get(HeaderSignature) != ""
}

// ErrMalformed means the payload headers cannot be read.
var ErrMalformed = errors.New("malformed payload redirect headers")

// ParseRedirect reads the signed entry of a payload redirect for the
// request path. It checks the form of every field, not the signature:
// Verify does that.
func ParseRedirect(h http.Header, path string) (*Signed, error) {
	s, err := ParseEntry(h, path)
	if err != nil {
		return nil, err
	}
	if s.Sources[0] == Relay {
		return nil, fmt.Errorf("%w: %s: a redirect's first source must be a URL", ErrMalformed, HeaderSource)
	}
	if loc := h.Get("Location"); loc != s.Sources[0] {
		return nil, fmt.Errorf("%w: Location: %q is not the first source", ErrMalformed, loc)
	}
	return s, nil
}

// ParseEntry reads the signed entry that a relayed payload response
// carries (the headers of a redirect, without Location).
func ParseEntry(h http.Header, path string) (*Signed, error) {
	bad := func(field string, err error) (*Signed, error) {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, field, err)
	}
	s := &Signed{Entry: Entry{Path: path, SHA256: h.Get(HeaderSHA256), Sources: h.Values(HeaderSource)}}
	var err error
	if s.Size, err = strconv.ParseInt(h.Get(HeaderSize), 10, 64); err != nil {
		return bad(HeaderSize, err)
	}
	if s.Expires, err = time.Parse(time.RFC3339, h.Get(HeaderExpires)); err != nil {
		return bad(HeaderExpires, err)
	}
	if s.KeyID = h.Get(HeaderKeyID); s.KeyID == "" {
		return bad(HeaderKeyID, errors.New("missing"))
	}
	if s.Signature, err = base64.StdEncoding.DecodeString(h.Get(HeaderSignature)); err != nil {
		return bad(HeaderSignature, err)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return s, nil
}

// StripHeaders removes every Sekisho-Payload-* header.
func StripHeaders(h http.Header) {
	for k := range h {
		if strings.HasPrefix(k, HeaderPrefix) {
			delete(h, k)
		}
	}
}
