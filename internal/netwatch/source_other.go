//go:build !linux && !windows

package netwatch

// newSource polls: this system's change notifications are not wired up.
func newSource(cfg Config) (source, error) { return newPoller(cfg.Poll), nil }
