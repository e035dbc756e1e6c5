package agent

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Auto mode (Config.Transport "auto").
const (
	// autoQUICTimeout bounds an HTTP/3 attempt: blocked UDP is silent,
	// and TCP is there to fall back on.
	autoQUICTimeout = 3 * time.Second
	// autoQUICRetry is how long requests go over TCP after HTTP/3 did not
	// answer, before HTTP/3 is tried again: a fallback is not forever.
	autoQUICRetry = 5 * time.Minute
)

// autoTransport sends requests over HTTP/3 while the gateway answers over
// UDP. When a QUIC connection cannot be opened (UDP blocked on the PC's
// network), that request and those of the next autoQUICRetry go over TCP;
// then HTTP/3 is tried again. Only a failed dial falls back: then nothing
// of the request was sent, so sending it over TCP is safe whatever its
// method.
type autoTransport struct {
	h3, tcp http.RoundTripper
	now     func() time.Time
	retry   time.Duration
	log     *zap.Logger

	mu       sync.Mutex
	tcpUntil time.Time // requests go over TCP until then
	fellBack bool      // on TCP since the last HTTP/3 failure
}

var _ http.RoundTripper = (*autoTransport)(nil)

// RoundTrip sends req over HTTP/3, or over TCP during a fallback.
func (a *autoTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !a.quicAllowed() {
		return a.tcp.RoundTrip(req)
	}
	h3req, held := holdBody(req)
	resp, err := a.h3.RoundTrip(h3req)
	var de *quicDialError
	fallBack := errors.As(err, &de) && req.Context().Err() == nil
	held.decide(fallBack)
	if !fallBack {
		if err == nil {
			a.quicWorked()
		}
		return resp, err
	}
	a.fallBack(err)
	return a.tcp.RoundTrip(req)
}

func (a *autoTransport) quicAllowed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.now().Before(a.tcpUntil)
}

func (a *autoTransport) fallBack(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tcpUntil = a.now().Add(a.retry)
	if !a.fellBack {
		a.fellBack = true
		a.log.Warn("gateway unreachable over quic, requests go over tcp", zap.Duration("retry_in", a.retry), zap.Error(err))
	}
}

func (a *autoTransport) quicWorked() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fellBack {
		a.fellBack = false
		a.log.Info("requests back on quic")
	}
}

// heldBody stands for a request body while HTTP/3 is tried. HTTP/3 closes
// the body when it fails, but a body that a failed dial never read must
// still go over TCP: a Close before decide is held back.
type heldBody struct {
	io.ReadCloser
	mu       sync.Mutex
	decided  bool
	closed   bool // closed before decide
	detached bool // the body went to TCP: this wrapper no longer owns it
}

// holdBody returns req, with its body held, for the HTTP/3 attempt.
func holdBody(req *http.Request) (*http.Request, *heldBody) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	b := &heldBody{ReadCloser: req.Body}
	r := req.WithContext(req.Context()) // a shallow copy
	r.Body = b
	return r, b
}

func (b *heldBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.detached:
		return nil
	case !b.decided:
		b.closed = true
		return nil
	}
	return b.ReadCloser.Close()
}

// decide ends the hold: the body goes to TCP (detach), or a Close held
// back is done now.
func (b *heldBody) decide(detach bool) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.decided, b.detached = true, detach
	if b.closed && !detach {
		b.ReadCloser.Close()
	}
}
