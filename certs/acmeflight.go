package certs

import (
	"context"
	"errors"
	"sync"
)

// issuanceEvent selects the certmagic events flight follows; the others
// (one per handshake among them) are not even built.
func issuanceEvent(event string) bool {
	switch event {
	case "cert_obtaining", "cert_obtained", "cert_failed":
		return true
	}
	return false
}

// flight counts the issuances in progress, following certmagic's events,
// and refuses new ones once closed: certmagic runs renewals on workers of
// its own, which an ACMESource cannot join, only wait for.
type flight struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{}
}

func (f *flight) onEvent(_ context.Context, event string, _ map[string]any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch event {
	case "cert_obtaining":
		if f.closing {
			return errors.New("certificate source is stopping")
		}
		f.n++
	case "cert_obtained", "cert_failed":
		if f.n > 0 {
			f.n--
		}
		if f.n == 0 && f.idle != nil {
			close(f.idle)
			f.idle = nil
		}
	}
	return nil
}

// close refuses new issuances and returns a channel closed once none is
// in progress.
func (f *flight) close() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closing = true
	ch := make(chan struct{})
	if f.n == 0 {
		close(ch)
	} else {
		f.idle = ch
	}
	return ch
}
