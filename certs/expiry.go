package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults of ExpiryOptions.
const (
	DefaultExpiryWarn   = 14 * 24 * time.Hour
	DefaultExpiryError  = 3 * 24 * time.Hour
	DefaultExpiryRepeat = 24 * time.Hour
	DefaultExpiryCheck  = time.Hour
)

// ExpiryOptions configures an ExpiryWatcher. The zero value means the
// defaults.
type ExpiryOptions struct {
	// WarnBefore is how long before expiry warnings start; default 14 days.
	WarnBefore time.Duration
	// ErrorBefore is how long before expiry errors start; default 3 days.
	ErrorBefore time.Duration
	// Repeat is how often a certificate is logged again while in the same
	// state; default 24 hours. A worse state is logged at once.
	Repeat time.Duration
	// Interval is how often Run checks; default 1 hour.
	Interval time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger receives the warnings and errors; default zap.NewNop().
	Logger *zap.Logger
}

// ExpiryWatcher logs certificates that approach expiry: a warning from
// WarnBefore, an error from ErrorBefore and once expired, each at most
// once per Repeat per certificate, and reports the time left for metrics.
type ExpiryWatcher struct {
	name  string
	certs func() []*x509.Certificate
	opts  ExpiryOptions
	log   *zap.Logger

	mu       sync.Mutex
	reported map[[32]byte]expiryReport // by certificate SHA-256
}

type expiryReport struct {
	at    time.Time
	state expiryState
}

type expiryState int

const (
	expiryFine expiryState = iota
	expirySoon
	expiryImminent
	expiryPast
)

// NewExpiryWatcher watches the certificates certs returns (the serving
// certificate, a CA bundle...), named name in logs.
func NewExpiryWatcher(name string, certs func() []*x509.Certificate, opts ExpiryOptions) (*ExpiryWatcher, error) {
	if name == "" || certs == nil {
		return nil, errors.New("expiry watcher: name and certificate function required")
	}
	if opts.WarnBefore == 0 {
		opts.WarnBefore = DefaultExpiryWarn
	}
	if opts.ErrorBefore == 0 {
		opts.ErrorBefore = DefaultExpiryError
	}
	if opts.Repeat == 0 {
		opts.Repeat = DefaultExpiryRepeat
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultExpiryCheck
	}
	if opts.ErrorBefore < 0 || opts.WarnBefore < opts.ErrorBefore {
		return nil, fmt.Errorf("expiry watcher: WarnBefore (%v) must be at least ErrorBefore (%v) >= 0", opts.WarnBefore, opts.ErrorBefore)
	}
	if opts.Repeat < 0 || opts.Interval < 0 {
		return nil, errors.New("expiry watcher: Repeat and Interval must not be negative")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	return &ExpiryWatcher{name: name, certs: certs, opts: opts,
		log: opts.Logger.With(zap.String("watch", name)), reported: map[[32]byte]expiryReport{}}, nil
}

// Run checks at once, then every Interval, until ctx ends.
func (w *ExpiryWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.opts.Interval)
	defer t.Stop()
	for {
		w.Check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check logs each watched certificate that is due.
func (w *ExpiryWatcher) Check() {
	now := w.opts.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := make(map[[32]byte]bool)
	for _, c := range w.certs() {
		fp := sha256.Sum256(c.Raw)
		seen[fp] = true
		left := c.NotAfter.Sub(now)
		state := w.state(left)
		last, ok := w.reported[fp]
		switch {
		case state == expiryFine:
			delete(w.reported, fp)
			continue
		case ok && state <= last.state && now.Sub(last.at) < w.opts.Repeat:
			continue
		}
		w.reported[fp] = expiryReport{at: now, state: state}
		level, msg := zapcore.WarnLevel, "certificate expires soon"
		switch state {
		case expiryImminent:
			level, msg = zapcore.ErrorLevel, "certificate about to expire"
		case expiryPast:
			level, msg = zapcore.ErrorLevel, "certificate expired"
		}
		w.log.Check(level, msg).Write(
			zap.String("subject", c.Subject.String()),
			zap.String("serial", c.SerialNumber.Text(16)),
			zap.Time("not_after", c.NotAfter),
			zap.Duration("time_left", left),
		)
	}
	for fp := range w.reported {
		if !seen[fp] {
			delete(w.reported, fp)
		}
	}
}

func (w *ExpiryWatcher) state(left time.Duration) expiryState {
	switch {
	case left < 0:
		return expiryPast
	case left <= w.opts.ErrorBefore:
		return expiryImminent
	case left <= w.opts.WarnBefore:
		return expirySoon
	}
	return expiryFine
}

// SecondsLeft returns the seconds until the first watched certificate
// expires (negative once it has), or NaN when there is none to watch.
func (w *ExpiryWatcher) SecondsLeft() float64 {
	now := w.opts.Now()
	left := math.NaN()
	for _, c := range w.certs() {
		s := c.NotAfter.Sub(now).Seconds()
		if math.IsNaN(left) || s < left {
			left = s
		}
	}
	return left
}
