package netwatch

import (
	"context"
	"net"
	"slices"
	"strings"
	"time"
)

// poller looks at the interface addresses every so often: a change costs
// up to one interval to notice.
type poller struct {
	every time.Duration
	stop  chan struct{}
}

func newPoller(every time.Duration) *poller {
	return &poller{every: every, stop: make(chan struct{})}
}

func (p *poller) run(ctx context.Context, note func(Kind)) error {
	last := addrPrint()
	t := time.NewTicker(p.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.stop:
			return nil
		case <-t.C:
		}
		if now := addrPrint(); now != last {
			last = now
			note(Poll)
		}
	}
}

func (p *poller) close() error {
	close(p.stop)
	return nil
}

// addrPrint describes the up interfaces and their addresses, in a stable
// order; "" when they cannot be listed.
func addrPrint() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var lines []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			lines = append(lines, ifc.Name+" "+a.String())
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}
