//go:build windows

package agent

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/windows/svc"
)

// RunAsService runs run as the Windows service name when the process was
// started by the service control manager: run's context ends on Stop or
// Shutdown, and the service stops when run returns. handled is false when
// the process is not a service: the caller runs run itself.
func RunAsService(name string, run func(ctx context.Context) error) (handled bool, err error) {
	isService, err := svc.IsWindowsService()
	if err != nil {
		return false, fmt.Errorf("detect windows service: %w", err)
	}
	if !isService {
		return false, nil
	}
	h := &serviceHandler{run: run}
	if err := svc.Run(name, h); err != nil {
		return true, fmt.Errorf("run service %s: %w", name, err)
	}
	return true, h.err
}

// serviceHandler answers the service control manager.
type serviceHandler struct {
	run func(ctx context.Context) error
	err error // what run returned
}

// stopWait is how long the service manager is told a stop may take.
const stopWait = 30 * time.Second

// Execute runs h.run until it returns or the manager asks to stop.
func (h *serviceHandler) Execute(_ []string, reqs <-chan svc.ChangeRequest, status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StartPending}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- h.run(ctx) }()
	status <- svc.Status{State: svc.Running, Accepts: svc.AcceptStop | svc.AcceptShutdown}
	for {
		select {
		case h.err = <-done:
			return h.exit(status)
		case req := <-reqs:
			switch req.Cmd {
			case svc.Interrogate:
				status <- req.CurrentStatus
			case svc.Stop, svc.Shutdown:
				status <- svc.Status{State: svc.StopPending, WaitHint: uint32(stopWait / time.Millisecond)}
				cancel()
				h.err = <-done
				return h.exit(status)
			}
		}
	}
}

// exit reports the stop: a service-specific exit code 1 when run failed.
func (h *serviceHandler) exit(status chan<- svc.Status) (bool, uint32) {
	status <- svc.Status{State: svc.StopPending}
	if h.err != nil {
		return true, 1
	}
	return false, 0
}
