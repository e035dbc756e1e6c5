package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultPollInterval is how often a FileSource checks its files.
const DefaultPollInterval = 5 * time.Second

// Reasons a certificate pair is refused; match them with errors.Is.
var (
	ErrKeyMismatch = errors.New("private key does not match the certificate")
	ErrExpired     = errors.New("certificate has expired")
	ErrNotYetValid = errors.New("certificate is not yet valid")
)

// FileOptions configures a FileSource. The zero value means the defaults.
type FileOptions struct {
	// PollInterval is how often the files are checked for a change of
	// inode, size or modification time; default DefaultPollInterval (5s).
	PollInterval time.Duration
	// Now is the clock validity is checked against; default time.Now.
	Now func() time.Time
	// Logger receives reloads and refusals; default zap.NewNop().
	Logger *zap.Logger
	// OnEvent, when set, is also called with every reload ("info") and
	// refusal ("error"): the level, the log message and its fields. It runs
	// on the reloading goroutine and must return quickly.
	OnEvent func(level, msg string, fields map[string]any)
}

// FileSource serves a certificate and key read from PEM files, and
// reloads them when they change (polled) or when Reload is called (on
// SIGHUP). A new pair replaces the one in service only once it parses, the
// key matches the certificate and the certificate is valid now; otherwise
// the old one keeps serving and the refusal is logged with its reason.
// The pair in service is swapped atomically. The poller takes a change that
// does not load yet for a replacement in progress (the key renamed a moment
// after the certificate) and reports it only if the files are still so at
// the next poll; Reload reports at once.
type FileSource struct {
	certFile, keyFile string
	poll              time.Duration
	now               func() time.Time
	log               *zap.Logger
	onEvent           func(level, msg string, fields map[string]any)

	cur atomic.Pointer[tls.Certificate]

	mu sync.Mutex // serializes loads; guards seen and pending
	// seen is the state of the files last loaded or tried.
	seen pairStamp
	// pending is set when a change seen by the poller did not load: the
	// other file of the pair may still be on its way, so the refusal is
	// reported only if the files stay so until the next poll.
	pending bool
}

// NewFileSource loads certFile (the leaf first, then its chain) and
// keyFile, and fails when the pair is not fit to serve.
func NewFileSource(certFile, keyFile string, opts FileOptions) (*FileSource, error) {
	if opts.PollInterval < 0 {
		return nil, fmt.Errorf("PollInterval: negative (%v)", opts.PollInterval)
	}
	s := &FileSource{certFile: certFile, keyFile: keyFile, poll: opts.PollInterval,
		now: opts.Now, log: opts.Logger, onEvent: opts.OnEvent}
	if s.poll == 0 {
		s.poll = DefaultPollInterval
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.With(zap.String("cert_file", certFile), zap.String("key_file", keyFile))
	s.seen = statPair(certFile, keyFile)
	cert, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(cert)
	s.log.Info("certificate loaded", certFields(cert.Leaf)...)
	return s, nil
}

// GetCertificate returns the pair in service, whatever the ClientHello.
func (s *FileSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// Leaf returns the certificate in service.
func (s *FileSource) Leaf() *x509.Certificate { return s.cur.Load().Leaf }

// Reload reads the files now. A pair that is not fit to serve is refused
// (logged, and returned): the one in service stays.
func (s *FileSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = statPair(s.certFile, s.keyFile)
	s.pending = false
	cert, err := s.load()
	if err != nil {
		s.refuse(err, "reload")
		return err
	}
	s.install(cert, "reload")
	return nil
}

// Run polls the files until ctx ends.
func (s *FileSource) Run(ctx context.Context) error {
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.check()
		}
	}
}

// check reloads when the files changed since last seen. A change that
// does not load is retried at the next poll, and reported if the files
// have not moved on by then: an operator replacing the certificate and
// then the key sees no false alarm.
func (s *FileSource) check() {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := statPair(s.certFile, s.keyFile)
	changed := !st.equal(s.seen)
	if !changed && !s.pending {
		return
	}
	s.seen = st
	cert, err := s.load()
	if err != nil {
		if changed {
			s.pending = true
			s.log.Debug("certificate files changed but do not load yet", zap.Error(err))
			return
		}
		s.pending = false
		s.refuse(err, "poll")
		return
	}
	s.pending = false
	s.install(cert, "poll")
}

// install puts cert in service unless it is the one already there.
func (s *FileSource) install(cert *tls.Certificate, trigger string) {
	if old := s.cur.Load(); old != nil && samePair(old, cert) {
		s.log.Debug("certificate unchanged", zap.String("trigger", trigger))
		return
	}
	s.cur.Store(cert)
	s.event(zapcore.InfoLevel, "certificate reloaded", append(certFields(cert.Leaf), zap.String("trigger", trigger))...)
}

// refuse reports a pair that was not put in service.
func (s *FileSource) refuse(err error, trigger string) {
	fields := []zap.Field{zap.String("reason", refusalReason(err)), zap.Error(err), zap.String("trigger", trigger)}
	if old := s.cur.Load(); old != nil {
		fields = append(fields, zap.String("serving_serial", old.Leaf.SerialNumber.Text(16)),
			zap.Time("serving_not_after", old.Leaf.NotAfter))
	}
	s.event(zapcore.ErrorLevel, "certificate refused, keeping the one in service", fields...)
}

func (s *FileSource) event(level zapcore.Level, msg string, fields ...zap.Field) {
	if ce := s.log.Check(level, msg); ce != nil {
		ce.Write(fields...)
	}
	if s.onEvent != nil {
		enc := zapcore.NewMapObjectEncoder()
		enc.AddString("cert_file", s.certFile)
		enc.AddString("key_file", s.keyFile)
		for _, f := range fields {
			f.AddTo(enc)
		}
		s.onEvent(level.String(), msg, enc.Fields)
	}
}

// load reads and checks the pair.
func (s *FileSource) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(s.certFile)
	if err != nil {
		return nil, &loadError{"unreadable", err}
	}
	keyPEM, err := os.ReadFile(s.keyFile)
	if err != nil {
		return nil, &loadError{"unreadable", err}
	}
	return checkPair(certPEM, keyPEM, s.certFile, s.keyFile, s.now())
}

// checkPair parses a PEM chain and key and checks that they belong
// together and that the leaf is valid at now.
func checkPair(certPEM, keyPEM []byte, certFile, keyFile string, now time.Time) (*tls.Certificate, error) {
	chain, err := ParseCerts(certPEM)
	if err != nil {
		return nil, &loadError{"unparsable", fmt.Errorf("%s: %w", certFile, err)}
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, &loadError{"unparsable", fmt.Errorf("%s: %w", keyFile, err)}
	}
	leaf := chain[0]
	if !publicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, ErrKeyMismatch)
	}
	if now.Before(leaf.NotBefore) {
		return nil, fmt.Errorf("%s: %w (from %s)", certFile, ErrNotYetValid, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s: %w (on %s)", certFile, ErrExpired, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	c := TLSCertificate(leaf, key, chain[1:]...)
	return &c, nil
}

// loadError tags a load failure with the reason logged.
type loadError struct {
	reason string
	err    error
}

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

// refusalReason is the short reason field of a refusal log.
func refusalReason(err error) string {
	var le *loadError
	switch {
	case errors.Is(err, ErrKeyMismatch):
		return "key_mismatch"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrNotYetValid):
		return "not_yet_valid"
	case errors.As(err, &le):
		return le.reason
	}
	return "other"
}

func certFields(leaf *x509.Certificate) []zap.Field {
	return []zap.Field{
		zap.String("subject", leaf.Subject.String()),
		zap.Strings("dns_names", leaf.DNSNames),
		zap.String("serial", leaf.SerialNumber.Text(16)),
		zap.Time("not_before", leaf.NotBefore),
		zap.Time("not_after", leaf.NotAfter),
	}
}

func samePair(a, b *tls.Certificate) bool {
	if len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if !bytes.Equal(a.Certificate[i], b.Certificate[i]) {
			return false
		}
	}
	ak, ok := a.PrivateKey.(interface{ Equal(crypto.PrivateKey) bool })
	return ok && ak.Equal(b.PrivateKey)
}

// pairStamp is what the poller compares: each file's identity, size and
// modification time (nil when the file cannot be stat'ed).
type pairStamp struct{ cert, key os.FileInfo }

func statPair(certFile, keyFile string) pairStamp {
	var p pairStamp
	p.cert, _ = os.Stat(certFile) // follows symlinks, as a Kubernetes secret mount needs
	p.key, _ = os.Stat(keyFile)
	return p
}

func (p pairStamp) equal(q pairStamp) bool { return sameFile(p.cert, q.cert) && sameFile(p.key, q.key) }

func sameFile(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
