package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sekisho/sekisho/certs"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"first", "second"} {
		if err := writeFileAtomic(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("read %q, %v; want %q", got, err, content)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the file", len(entries))
	}
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
}

func TestLoadIdentity(t *testing.T) {
	g := newFakeGateway(t)
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
		want  string // substring of the error; "" for success
	}{
		{"ok", func(*testing.T, string) {}, ""},
		{"no key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, KeyFile)) }, "run sekisho agent enroll first"},
		{"no certificate", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CertFile)) }, "run sekisho agent enroll first"},
		{"no catalog keys", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, CatalogKeysFile)) }, ""},
		{"key readable by others", func(t *testing.T, dir string) {
			if runtime.GOOS == "windows" {
				t.Skip("mode bits do not protect files on Windows")
			}
			os.Chmod(filepath.Join(dir, KeyFile), 0o644)
		}, "agent.key: mode 0644 lets group or others read the private key"},
		{"key of another certificate", func(t *testing.T, dir string) {
			k, _ := certs.NewKey()
			if err := (store{dir: dir}).saveKey(k); err != nil {
				t.Fatal(err)
			}
		}, "does not hold the key of"},
		{"bad catalog key", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CatalogKeysFile), []byte(`[{"id":"k","public_key":"AAAA"}]`), 0o600)
		}, "Ed25519"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			want := g.provision(t, dir, time.Now(), time.Hour)
			tc.spoil(t, dir)
			id, err := LoadIdentity(dir)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("err = %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !id.Leaf().Equal(want.Leaf()) || id.Principal != want.Principal || len(id.Chain) != 2 {
				t.Fatalf("loaded %+v", id)
			}
		})
	}
	if _, err := LoadIdentity(t.TempDir()); !errors.Is(err, ErrNotEnrolled) {
		t.Fatalf("empty dir: %v, want ErrNotEnrolled", err)
	}
}

// TestCatalogKeysFormat checks the file format: the protocol's JSON list
// of {id, public_key (base64)}.
func TestCatalogKeysFormat(t *testing.T) {
	g := newFakeGateway(t)
	dir := t.TempDir()
	g.provision(t, dir, time.Now(), time.Hour)
	data, err := os.ReadFile(filepath.Join(dir, CatalogKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	var raw []map[string]string
	if err := json.Unmarshal(data, &raw); err != nil || len(raw) != 1 || raw[0]["id"] != "k0" || len(raw[0]["public_key"]) != 44 {
		t.Fatalf("catalog-keys.json = %s (%v)", data, err)
	}
}
