package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"
)

// quic returns the quic-go configuration of c, for either end. Both ends
// should use the same values: each one's idle timeout applies to itself.
func (c Config) quic() *quic.Config {
	c = c.WithDefaults()
	return &quic.Config{
		// quic-go aborts a handshake that is not done in twice this.
		HandshakeIdleTimeout: c.QUICHandshakeTimeout / 2,
		// A dead peer is noticed when nothing came from it for this long,
		// keepalive pings included: the same bound as yamux's.
		MaxIdleTimeout:                 c.KeepAliveInterval + c.WriteTimeout,
		KeepAlivePeriod:                c.KeepAliveInterval,
		InitialStreamReceiveWindow:     uint64(c.StreamWindow),
		MaxStreamReceiveWindow:         uint64(c.StreamWindow),
		InitialConnectionReceiveWindow: uint64(c.QUICConnectionWindow),
		MaxConnectionReceiveWindow:     uint64(c.QUICConnectionWindow),
		MaxIncomingStreams:             int64(c.QUICMaxStreams),
		MaxIncomingUniStreams:          -1, // the tunnel uses bidirectional streams only
		// No 0-RTT (Allow0RTT stays false and only Dial/Listen are used,
		// never their Early variants) and no datagrams.
	}
}

// QUIC application error codes: the session's CONNECTION_CLOSE and a
// stream's Close (STOP_SENDING, and RESET_STREAM when a write is cut).
const (
	quicCodeClosed       quic.ApplicationErrorCode = 0
	quicCodeStreamClosed quic.StreamErrorCode      = 0
)

// NewQUICSession wraps an established QUIC connection, dialed (the
// connector's end) or accepted (the gateway's end): QUIC knows which end
// it is, and its stream ids tell the openers apart. The caller keeps the
// connection's quic.Transport, and closes it after the session.
func NewQUICSession(conn *quic.Conn) Session { return newQUICSession(conn, nil) }

// quicSession is a Session over one QUIC connection.
type quicSession struct {
	conn    *quic.Conn
	streams atomic.Int64 // open streams (see quicStream.finish)
	// release frees what the session owns beside the connection (DialQUIC's
	// own UDP socket), once the connection has ended; nil when none.
	release  func()
	released sync.Once
}

var _ Session = (*quicSession)(nil)

func newQUICSession(conn *quic.Conn, release func()) *quicSession {
	s := &quicSession{conn: conn, release: release}
	if release != nil {
		// A session the peer or the idle timeout ends frees its socket too.
		context.AfterFunc(conn.Context(), s.cleanup)
	}
	return s
}

func (s *quicSession) cleanup() {
	if s.release != nil {
		s.released.Do(s.release)
	}
}

func (s *quicSession) OpenStream(ctx context.Context) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// OpenStreamSync waits while the peer's stream limit is reached. The
	// peer learns of the stream with its first byte.
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", s.openErr(ctx, err))
	}
	return s.newStream(st), nil
}

func (s *quicSession) AcceptStream(ctx context.Context) (Stream, error) {
	st, err := s.conn.AcceptStream(ctx)
	if err != nil {
		return nil, s.openErr(ctx, err)
	}
	return s.newStream(st), nil
}

// openErr tells a cancelled open or accept from a dead session.
func (s *quicSession) openErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return err
	}
	return sessionClosed(err)
}

// Close ends the session with a CONNECTION_CLOSE, so the peer learns at
// once, and waits until quic-go has let go of the connection.
func (s *quicSession) Close() error {
	s.conn.CloseWithError(quicCodeClosed, "")
	s.cleanup()
	return nil
}

func (s *quicSession) Done() <-chan struct{} { return s.conn.Context().Done() }

func (s *quicSession) NumStreams() int {
	if s.conn.Context().Err() != nil {
		return 0
	}
	return int(s.streams.Load())
}

func (s *quicSession) LocalAddr() net.Addr  { return s.conn.LocalAddr() }
func (s *quicSession) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }
func (s *quicSession) Transport() string    { return TransportQUIC }

func (s *quicSession) connectionState() (tls.ConnectionState, bool) {
	return s.conn.ConnectionState().TLS, true
}

// ConnectionState returns the TLS state of the connection under s (the
// peer's certificates, the negotiated protocol): the gateway reads the
// connector's certificate from it. ok is false when s does not run over
// TLS (a yamux session over a plain net.Conn).
func ConnectionState(s Session) (cs tls.ConnectionState, ok bool) {
	t, ok := s.(interface {
		connectionState() (tls.ConnectionState, bool)
	})
	if !ok {
		return tls.ConnectionState{}, false
	}
	return t.connectionState()
}

// sessionClosed marks err, which ended a session, as ErrSessionClosed.
// The cause (the peer's close, the idle timeout, ...) shows in the
// message only: quic-go's connection errors all match net.ErrClosed, and
// some are timeouts, which a dead session must not look like.
func sessionClosed(err error) error {
	if errors.Is(err, ErrSessionClosed) {
		return err
	}
	return &sessionError{cause: err}
}

type sessionError struct{ cause error }

func (e *sessionError) Error() string { return ErrSessionClosed.Error() + ": " + e.cause.Error() }
func (e *sessionError) Unwrap() error { return ErrSessionClosed }
