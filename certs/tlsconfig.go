package certs

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// curveNames maps the names accepted in config files to curve IDs.
var curveNames = map[string]tls.CurveID{
	"x25519mlkem768": tls.X25519MLKEM768,
	"x25519":         tls.X25519,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
}

// ParseCurves turns curve names (X25519MLKEM768, X25519, P256, P384, P521;
// case-insensitive) into curve IDs for tls.Config.CurvePreferences. An empty
// list yields nil: Go's defaults, which include the post-quantum hybrid.
func ParseCurves(names []string) ([]tls.CurveID, error) {
	var ids []tls.CurveID
	for _, n := range names {
		id, ok := curveNames[strings.ToLower(strings.ReplaceAll(n, "-", ""))]
		if !ok {
			return nil, fmt.Errorf("unknown curve %q (want X25519MLKEM768, X25519, P256, P384 or P521)", n)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// ServerConfig returns the base TLS configuration of sekisho's listeners:
// TLS 1.3 only, with the given curve preferences.
func ServerConfig(curves []tls.CurveID) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: curves,
	}
}

// ClientConfig returns the base TLS configuration of sekisho's clients
// (connector toward gateway, agents): TLS 1.3 only.
func ClientConfig(curves []tls.CurveID) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: curves,
	}
}
