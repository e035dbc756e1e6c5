package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCatalogCommands(t *testing.T) {
	dir := t.TempDir()
	id := strings.TrimSpace(must(t, dir, "catalog", "keygen", "catalog.key"))
	if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) {
		t.Fatalf("keygen printed %q, want a 16-hex-digit key id", id)
	}
	if fi, err := os.Stat(filepath.Join(dir, "catalog.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", fi, err)
	}
	good := "payloads:\n  - path: /patches/KB5031356.msu\n    sha256: " + strings.Repeat("ab", 32) +
		"\n    size: 20MiB\n    sources:\n      - https://cdn.example/KB5031356.msu\n      - relay\n"
	bad := strings.Replace(good, "https://cdn.example", "ftp://cdn.example", 1)
	os.WriteFile(filepath.Join(dir, "good.yaml"), []byte(good), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte(bad), 0o600)
	if out := must(t, dir, "catalog", "check", "good.yaml"); !strings.Contains(out, "good.yaml: ok (1 entries)") {
		t.Fatalf("check good.yaml: %q", out)
	}
	_, stderr, code := run(t, dir, "catalog", "check", "good.yaml", "bad.yaml")
	if code != 1 || !strings.Contains(stderr, "bad.yaml:6: payloads[0].sources[0]: want an http or https URL") {
		t.Fatalf("check bad.yaml: exit %d, stderr %q", code, stderr)
	}
}
