//go:build !windows

package agent

import "context"

// RunAsService runs run as a Windows service when the process was started
// by the service control manager. Elsewhere it does nothing and reports
// handled false: the caller runs run itself.
func RunAsService(name string, run func(ctx context.Context) error) (handled bool, err error) {
	return false, nil
}
