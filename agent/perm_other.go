//go:build !windows

package agent

import (
	"fmt"
	"os"
)

// checkPrivate refuses a key file that group or others may read.
func checkPrivate(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("%s: mode %#o lets group or others read the private key: chmod 600 it", path, m)
	}
	return nil
}

// restrictPath does nothing here: files are created 0600 and the state
// directory 0700.
func restrictPath(string, bool) error { return nil }

// syncDir makes a rename in dir durable; errors are ignored (some file
// systems cannot sync a directory).
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
