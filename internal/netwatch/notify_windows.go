package netwatch

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sys/windows"
)

// Windows calls back on threads of its own. The callbacks are made once
// per process (windows.NewCallback slots are never freed) and fan out to
// the live sources.
var (
	callbacksOnce sync.Once
	addrCallback  uintptr
	ifCallback    uintptr

	sourcesMu sync.Mutex
	sources   = map[*notifySource]struct{}{}
)

func initCallbacks() {
	// Each is called with the caller context, the changed row and the
	// notification type; the row is not needed to know that something
	// changed.
	addrCallback = windows.NewCallback(func(_, _, _ uintptr) uintptr { broadcast(Addr); return 0 })
	ifCallback = windows.NewCallback(func(_, _, _ uintptr) uintptr { broadcast(Interface); return 0 })
}

func broadcast(k Kind) {
	sourcesMu.Lock()
	defer sourcesMu.Unlock()
	for s := range sources {
		select {
		case s.notes <- k:
		default: // one is queued already: the burst is reported anyway
		}
	}
}

// notifySource receives NotifyUnicastIpAddressChange and
// NotifyIpInterfaceChange callbacks.
type notifySource struct {
	notes     chan Kind
	done      chan struct{}
	addr, ifc windows.Handle
	once      sync.Once
}

func newSource(Config) (source, error) {
	callbacksOnce.Do(initCallbacks)
	s := &notifySource{notes: make(chan Kind, 16), done: make(chan struct{})}
	sourcesMu.Lock()
	sources[s] = struct{}{}
	sourcesMu.Unlock()
	if err := windows.NotifyUnicastIpAddressChange(windows.AF_UNSPEC, addrCallback, nil, false, &s.addr); err != nil {
		s.close()
		return nil, fmt.Errorf("NotifyUnicastIpAddressChange: %w", err)
	}
	if err := windows.NotifyIpInterfaceChange(windows.AF_UNSPEC, ifCallback, nil, false, &s.ifc); err != nil {
		s.close()
		return nil, fmt.Errorf("NotifyIpInterfaceChange: %w", err)
	}
	return s, nil
}

func (s *notifySource) run(ctx context.Context, note func(Kind)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case k := <-s.notes:
			note(k)
		}
	}
}

// close stops the notifications. The source leaves the fan-out first:
// CancelMibChangeNotify2 waits for callbacks in progress, which may be
// waiting for sourcesMu.
func (s *notifySource) close() error {
	var err error
	s.once.Do(func() {
		sourcesMu.Lock()
		delete(sources, s)
		sourcesMu.Unlock()
		for _, h := range []windows.Handle{s.addr, s.ifc} {
			if h != 0 {
				if e := windows.CancelMibChangeNotify2(h); e != nil && err == nil {
					err = fmt.Errorf("CancelMibChangeNotify2: %w", e)
				}
			}
		}
		close(s.done)
	})
	return err
}
