package connector

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/payload"
)

var catalogNow = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

const goodEntry = `
  - path: /patches/a.msu
    sha256: ` + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `
    size: 20MiB
    sources: [https://cdn.example/a.msu, relay]
`

func writeFile(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadCatalog(t *testing.T) {
	c, err := loadCatalog(writeFile(t, "c.yaml", "payloads:"+goodEntry), catalogNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.entries) != 1 || c.entries[0].Size != 20<<20 || c.entries[0].Sources[1] != payload.Relay {
		t.Fatalf("entries = %+v", c.entries)
	}
	// JSON is YAML too.
	j := `{"payloads": [{"path": "/a", "sha256": "` + strings.Repeat("b", 64) + `", "size": 3, "sources": ["https://cdn.example/a"]}]}`
	if _, err := loadCatalog(writeFile(t, "c.json", j), catalogNow); err != nil {
		t.Fatalf("JSON catalog: %v", err)
	}
	tests := []struct{ name, file, want string }{
		{"misspelled key", "payloads:\n  - path: /a\n    sah256: x\n", ":3: payloads[0].sah256: unknown key, did you mean \"sha256\"?"},
		{"relative path", "payloads:\n  - path: a\n    sha256: " + strings.Repeat("a", 64) + "\n    size: 1\n    sources: [relay]\n", ":2: payloads[0].path: must start with /"},
		{"bad source", "payloads:\n  - path: /a\n    sha256: " + strings.Repeat("a", 64) + "\n    size: 1\n    sources: [relay, file:///etc/passwd]\n", ":5: payloads[0].sources[1]: want an http or https URL"},
		{"duplicate", "payloads:" + goodEntry + goodEntry, ":7: payloads[1].path: /patches/a.msu is also payloads[0]"},
		{"expired", "payloads:\n  - path: /a\n    sha256: " + strings.Repeat("a", 64) + "\n    size: 1\n    sources: [relay]\n    expires: 2026-01-01T00:00:00Z\n", "payloads[0] (/a): expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadCatalog(writeFile(t, "c.yaml", tt.file), catalogNow)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadSigners(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	edFile := filepath.Join(t.TempDir(), "catalog.key")
	if err := certs.WriteKey(edFile, ed); err != nil {
		t.Fatal(err)
	}
	ec, _ := certs.NewKey()
	ecFile := filepath.Join(t.TempDir(), "ec.key")
	if err := certs.WriteKey(ecFile, ec); err != nil {
		t.Fatal(err)
	}
	s, err := loadSigners(PayloadsConfig{SigningKeys: []string{edFile}})
	if err != nil || len(s) != 1 || s[0].Public().ID != payload.KeyID(ed.Public().(ed25519.PublicKey)) {
		t.Fatalf("loadSigners = %v, %v", s, err)
	}
	if _, err := loadSigners(PayloadsConfig{SigningKeys: []string{edFile, ecFile}}); err == nil || !strings.Contains(err.Error(), "signing_keys[1]") || !strings.Contains(err.Error(), "Ed25519") {
		t.Fatalf("an ECDSA key: %v", err)
	}
	if _, err := loadSigners(PayloadsConfig{SigningKeys: []string{edFile}, Keys: []ed25519.PrivateKey{ed}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("the same key twice: %v", err)
	}
}

func TestSignCatalog(t *testing.T) {
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := payload.NewSigner(ed)
	base := payload.Entry{SHA256: strings.Repeat("a", 64), Size: 1, Sources: []string{"https://cdn.example/a"}}
	soon, late, gone := base, base, base
	soon.Path, soon.Expires = "/soon", catalogNow.Add(time.Hour)
	late.Path = "/late"
	gone.Path, gone.Expires = "/gone", catalogNow.Add(-time.Minute)
	p := PayloadsConfig{}.withDefaults()
	p.Relay.PathPrefixes = []string{"/downloads/"}
	raw, n, err := signCatalog("acme", &catalog{entries: []payload.Entry{soon, late, gone}}, []*payload.Signer{signer}, p, catalogNow)
	if err != nil || n != 2 {
		t.Fatalf("signCatalog = %d entries, %v; want 2", n, err)
	}
	var c payload.Catalog
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	keys := []payload.PublicKey{signer.Public()}
	for _, e := range c.Entries {
		want := map[string]time.Time{"/soon": soon.Expires, "/late": catalogNow.Add(24 * time.Hour)}[e.Path]
		if !e.Expires.Equal(want) {
			t.Errorf("%s expires %v, want %v (the earlier of its own and now + signature lifetime)", e.Path, e.Expires, want)
		}
		if err := payload.Verify(keys, "acme", e.Path, &e, catalogNow); err != nil {
			t.Errorf("%s: %v", e.Path, err)
		}
	}
	if len(c.Relay.PathPrefixes) != 1 {
		t.Fatalf("relay policy not carried: %+v", c.Relay)
	}
	if raw, n, _ := signCatalog("acme", nil, nil, PayloadsConfig{}.withDefaults(), catalogNow); raw != nil || n != 0 {
		t.Fatalf("nothing to push, got %s", raw)
	}
}

func TestPayloadsConfigValidate(t *testing.T) {
	p := PayloadsConfig{Catalog: "c.yaml", Relay: RelayConfig{MaxConcurrent: -1, PathPrefixes: []string{"downloads"}}}
	var got []string
	for _, err := range p.validate() {
		got = append(got, err.Error())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"payloads.signing_keys", "payloads.relay: values must not be negative", "payloads.relay.path_prefixes[0]: must start with /"} {
		if !strings.Contains(all, want) {
			t.Errorf("validation errors %q lack %q", all, want)
		}
	}
}
