//go:build unix

package loadgen

import "syscall"

// RaiseFileLimit lifts the soft limit on open files to the hard limit and
// returns the new limit. A process cannot go above the hard limit; beyond
// it, split the agents over several loadgen processes.
func RaiseFileLimit() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, err
		}
	}
	return r.Cur, nil
}
