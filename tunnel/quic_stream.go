package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// ErrStreamReset is returned by a QUIC stream's Read or Write when the
// peer aborted the stream: it closed the stream while this side still
// wrote to it, or it closed the stream in the middle of a write. A reset
// is never reported as a clean end of stream.
var ErrStreamReset = errors.New("tunnel stream reset by peer")

// quicStream adapts a QUIC stream to Stream.
//
// quic-go's Close only ends the write direction (FIN), like yamux's.
// Close here ends both: it sends FIN after what was written, and
// STOP_SENDING, so the peer's further writes fail at once (QUIC has the
// reset that yamux lacks); a Read blocked on this side returns
// net.ErrClosed. A Write in progress when Close comes is cut off with
// RESET_STREAM instead of FIN, so that the peer does not take the cut for
// the end of the data.
type quicStream struct {
	str     *quic.Stream
	sess    *quicSession
	closed  atomic.Bool
	writers atomic.Int32  // Writes in progress
	done    atomic.Uint32 // doneRead | doneWrite once each direction ended
}

const (
	doneRead  = 1
	doneWrite = 2
)

var _ Stream = (*quicStream)(nil)

func (s *quicSession) newStream(str *quic.Stream) *quicStream {
	s.streams.Add(1)
	return &quicStream{str: str, sess: s}
}

// finish marks directions as ended; the session counts the stream until
// both have.
func (s *quicStream) finish(dirs uint32) {
	for {
		old := s.done.Load()
		if old|dirs == old {
			return
		}
		if s.done.CompareAndSwap(old, old|dirs) {
			if old|dirs == doneRead|doneWrite {
				s.sess.streams.Add(-1)
			}
			return
		}
	}
}

func (s *quicStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.str.Read(p)
	if err != nil {
		err = s.mapErr(err, doneRead)
	}
	return n, err
}

func (s *quicStream) Write(p []byte) (int, error) {
	s.writers.Add(1)
	defer s.writers.Add(-1)
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.str.Write(p)
	if err != nil {
		err = s.mapErr(err, doneWrite)
	}
	return n, err
}

// mapErr translates quic-go's error of one direction: a local Close is
// net.ErrClosed, a peer's reset ErrStreamReset, a dead connection
// ErrSessionClosed; deadlines, EOF and writes after CloseWrite pass.
func (s *quicStream) mapErr(err error, dir uint32) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	var se *quic.StreamError
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return err
	case err == io.EOF:
		s.finish(dir)
		return err
	case errors.Is(err, quic.ErrStreamClosed):
		return err
	case errors.As(err, &se):
		s.finish(dir)
		if !se.Remote {
			return net.ErrClosed
		}
		return fmt.Errorf("%w: %w", ErrStreamReset, err)
	default:
		s.finish(doneRead | doneWrite)
		return sessionClosed(err)
	}
}

// CloseWrite sends FIN: the peer reads EOF after the bytes written.
func (s *quicStream) CloseWrite() error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	err := s.str.Close()
	s.finish(doneWrite)
	if err != nil {
		// The peer stopped reading first (STOP_SENDING).
		return fmt.Errorf("%w: %w", ErrStreamReset, err)
	}
	return nil
}

// Close ends both directions; see quicStream.
func (s *quicStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.str.CancelRead(quicCodeStreamClosed)
	if s.writers.Load() > 0 {
		s.str.CancelWrite(quicCodeStreamClosed)
	} else {
		s.str.Close() // an error means the peer stopped reading: nothing to tell
	}
	s.finish(doneRead | doneWrite)
	return nil
}

func (s *quicStream) LocalAddr() net.Addr                { return s.sess.conn.LocalAddr() }
func (s *quicStream) RemoteAddr() net.Addr               { return s.sess.conn.RemoteAddr() }
func (s *quicStream) SetDeadline(t time.Time) error      { return s.str.SetDeadline(t) }
func (s *quicStream) SetReadDeadline(t time.Time) error  { return s.str.SetReadDeadline(t) }
func (s *quicStream) SetWriteDeadline(t time.Time) error { return s.str.SetWriteDeadline(t) }
