package gateway

import (
	"strings"
	"testing"
	"time"
)

// FuzzDecodeCatalog feeds the gateway's reading of a snapshot's payload
// catalog (connector bytes) with arbitrary JSON: it must refuse or index,
// never panic, and an indexed entry must be well formed.
func FuzzDecodeCatalog(f *testing.F) {
	f.Add([]byte(`{"entries": [{"path": "/p", "sha256": "` + strings.Repeat("a", 64) + `", "size": 1,
		"sources": ["https://cdn.example/p", "relay"], "expires": "2030-01-01T00:00:00Z", "key_id": "k", "signature": "c2ln"}],
		"relay": {"path_prefixes": ["/patches/"], "size_threshold": 5}}`))
	f.Add([]byte(`{"entries": null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ix, err := decodeCatalog(raw)
		if err != nil {
			return
		}
		for _, p := range []string{"/p", "/", "/patches/x"} {
			if e := ix.Lookup(p); e != nil && (e.Validate() != nil || e.Path != p || e.Expires.Before(time.Time{}.Add(time.Second))) {
				t.Fatalf("indexed a bad entry: %+v", e)
			}
		}
	})
}
