package gateway

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The stateless reset key is made once, kept private, and the same on
// every later start; a damaged file is refused by name.
func TestLoadResetKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reset.key")
	first, err := loadResetKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := loadResetKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if *again != *first {
		t.Error("the key changed between two starts")
	}
	if *first == [32]byte{} {
		t.Error("the key is all zeros")
	}
	for _, bad := range []string{"", "not hex\n", strings.Repeat("ab", 31) + "\n"} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := loadResetKey(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("content %q: error %v, want one naming %s", bad, err, path)
		}
	}
	if _, err := loadResetKey(filepath.Join(t.TempDir(), "missing-dir", "reset.key")); err == nil {
		t.Error("a key file in a missing directory was accepted")
	}
}
