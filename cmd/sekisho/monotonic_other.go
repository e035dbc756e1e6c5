//go:build !linux

package main

// monotonicUsec is not needed off Linux (no systemd).
func monotonicUsec() int64 { return 0 }
