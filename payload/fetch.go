package payload

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// DefaultHoldBack is how many final bytes a download holds back until the
// digest matches. Payloads up to this size are verified whole before the
// first byte goes out, so a bad source is replaced without the reader
// noticing; for larger ones the reader has all but these bytes and is
// never handed the end of an unverified payload.
const DefaultHoldBack = 1 << 20

const chunkSize = 32 << 10

// Download errors.
var (
	// ErrNoSource: every source failed; the error joins each one's reason.
	ErrNoSource = errors.New("no source delivered the payload")
	// ErrDigestMismatch: a source's bytes did not hash to the entry's
	// digest.
	ErrDigestMismatch = errors.New("payload digest mismatch")
	// ErrSizeMismatch: a source sent more or fewer bytes than the entry's
	// size.
	ErrSizeMismatch = errors.New("payload size mismatch")
	// ErrPrefixMismatch: a fallback source disagrees with the bytes already
	// handed to the reader.
	ErrPrefixMismatch = errors.New("source disagrees with the bytes already delivered")
)

// Opener opens a source from its first byte. It returns an error, not a
// body, when the source does not offer the whole payload (a status other
// than 200, a Content-Length other than the size).
type Opener func(ctx context.Context, source string) (io.ReadCloser, error)

// FetchConfig says what to download and from where.
type FetchConfig struct {
	SHA256  string // lowercase hex
	Size    int64
	Sources []string // in order; each is tried once
	Open    Opener
	// HoldBack is the number of final bytes held until the digest
	// matches. Default DefaultHoldBack.
	HoldBack int
	// OnFailure, when set, is told each source that failed and why.
	OnFailure func(source string, err error)
}

// Download is a payload being fetched and verified. Read returns the
// payload's bytes; it returns io.EOF only after the digest matched, and an
// error (never io.EOF) when no source delivered the payload.
type Download struct {
	ctx  context.Context
	cfg  FetchConfig
	want []byte

	next  int // index of the next source to try
	cur   io.ReadCloser
	src   string
	pos   int64 // bytes read from cur
	fails []error
	sent  int64     // bytes moved to ready (handed out or about to be)
	sentH hash.Hash // SHA-256 of those bytes
	held  [][]byte  // read, not yet handed out
	heldN int
	ready [][]byte
	err   error // io.EOF once verified, or the final error
}

// Fetch opens the first source that answers and returns the download. It
// fails with ErrNoSource, before any byte is read, when none answers.
func Fetch(ctx context.Context, cfg FetchConfig) (*Download, error) {
	want, err := hex.DecodeString(cfg.SHA256)
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("fetch payload: bad digest %q", cfg.SHA256)
	}
	if cfg.HoldBack <= 0 {
		cfg.HoldBack = DefaultHoldBack
	}
	d := &Download{ctx: ctx, cfg: cfg, want: want, sentH: sha256.New()}
	if !d.openNext() {
		return nil, d.err
	}
	return d, nil
}

// Source returns the source being read.
func (d *Download) Source() string { return d.src }

// Failures returns the reasons of the sources that failed so far.
func (d *Download) Failures() []error { return d.fails }

// Read implements io.Reader.
func (d *Download) Read(p []byte) (int, error) {
	for len(d.ready) == 0 {
		if d.err != nil {
			return 0, d.err
		}
		d.fill()
	}
	n := copy(p, d.ready[0])
	if d.ready[0] = d.ready[0][n:]; len(d.ready[0]) == 0 {
		d.ready = d.ready[1:]
	}
	return n, nil
}

// Close stops the download.
func (d *Download) Close() error {
	if d.cur != nil {
		d.cur.Close()
		d.cur = nil
	}
	if d.err == nil {
		d.err = errors.New("payload download closed")
	}
	return nil
}

// fill reads one chunk from the current source, moving it along: into
// held, from held to ready, or to the next source.
func (d *Download) fill() {
	if d.cur == nil && !d.openNext() {
		return
	}
	buf := make([]byte, chunkSize)
	n, err := d.cur.Read(buf)
	if n > 0 {
		if d.pos+int64(n) > d.cfg.Size {
			d.fail(fmt.Errorf("%w: more than %d bytes", ErrSizeMismatch, d.cfg.Size))
			return
		}
		d.pos += int64(n)
		d.held = append(d.held, buf[:n])
		d.heldN += n
		d.release()
	}
	switch {
	case err == io.EOF && d.pos != d.cfg.Size:
		d.fail(fmt.Errorf("%w: %d bytes of %d", ErrSizeMismatch, d.pos, d.cfg.Size))
	case err == io.EOF:
		d.verify()
	case err != nil:
		d.fail(err)
	}
}

// release hands out the held chunks beyond the hold-back.
func (d *Download) release() {
	for len(d.held) > 0 && d.heldN-len(d.held[0]) >= d.cfg.HoldBack {
		d.handOut(d.held[0])
		d.heldN -= len(d.held[0])
		d.held = d.held[1:]
	}
}

func (d *Download) handOut(b []byte) {
	d.sentH.Write(b)
	d.sent += int64(len(b))
	d.ready = append(d.ready, b)
}

// verify checks the digest of the whole payload (handed out and held)
// and hands out the rest when it matches.
func (d *Download) verify() {
	h, err := d.sentH.(hash.Cloner).Clone()
	if err != nil {
		d.fail(err)
		return
	}
	for _, b := range d.held {
		h.Write(b)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), d.want) != 1 {
		d.fail(fmt.Errorf("%w: got %x", ErrDigestMismatch, h.Sum(nil)))
		return
	}
	for _, b := range d.held {
		d.handOut(b)
	}
	d.held, d.heldN = nil, 0
	d.cur.Close()
	d.cur, d.err = nil, io.EOF
}

// fail drops the current source and its held bytes.
func (d *Download) fail(err error) {
	d.fails = append(d.fails, fmt.Errorf("source %s: %w", d.src, err))
	if d.cfg.OnFailure != nil {
		d.cfg.OnFailure(d.src, err)
	}
	d.cur.Close()
	d.cur, d.held, d.heldN = nil, nil, 0
}

// openNext opens the next source that answers and agrees with the bytes
// already handed out. It sets d.err and returns false when none is left.
func (d *Download) openNext() bool {
	for d.next < len(d.cfg.Sources) {
		d.src = d.cfg.Sources[d.next]
		d.next++
		body, err := d.cfg.Open(d.ctx, d.src)
		if err != nil {
			d.fails = append(d.fails, fmt.Errorf("source %s: %w", d.src, err))
			if d.cfg.OnFailure != nil {
				d.cfg.OnFailure(d.src, err)
			}
			continue
		}
		d.cur, d.pos = body, 0
		if d.sent > 0 && !d.skipSent() {
			continue
		}
		return true
	}
	if d.ctx.Err() != nil {
		d.fails = append(d.fails, d.ctx.Err())
	}
	d.err = fmt.Errorf("%w: %w", ErrNoSource, errors.Join(d.fails...))
	return false
}

// skipSent reads the bytes already handed out from the new source and
// checks that they are the same.
func (d *Download) skipSent() bool {
	h := sha256.New()
	n, err := io.CopyN(h, d.cur, d.sent)
	switch {
	case err != nil:
		d.fail(fmt.Errorf("read the first %d bytes: %w", d.sent, err))
		return false
	case subtle.ConstantTimeCompare(h.Sum(nil), d.sentH.Sum(nil)) != 1:
		d.fail(fmt.Errorf("%w (first %d bytes)", ErrPrefixMismatch, d.sent))
		return false
	}
	d.pos = n
	return true
}
