package tunnel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
)

func (c Config) yamux() *yamux.Config {
	c = c.WithDefaults()
	y := &yamux.Config{
		AcceptBacklog:          c.AcceptBacklog,
		EnableKeepAlive:        true,
		KeepAliveInterval:      c.KeepAliveInterval,
		ConnectionWriteTimeout: c.WriteTimeout,
		MaxStreamWindowSize:    uint32(c.StreamWindow),
		StreamOpenTimeout:      30 * time.Second,
		StreamCloseTimeout:     c.StreamCloseTimeout,
		LogOutput:              io.Discard,
	}
	if c.Logf != nil {
		y.LogOutput = nil
		y.Logger = logfLogger(c.Logf)
	}
	return y
}

// NewYamuxClient starts the client (connector) end of a yamux session over
// conn, which must already be authenticated.
func NewYamuxClient(conn net.Conn, c Config) (Session, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	fc := newFrameConn(conn, c.WithDefaults().WriteTimeout)
	s, err := yamux.Client(fc, c.yamux())
	if err != nil {
		fc.Close()
		return nil, fmt.Errorf("start yamux client: %w", err)
	}
	return &yamuxSession{s: s, conn: conn}, nil
}

// NewYamuxServer starts the server (gateway) end of a yamux session.
func NewYamuxServer(conn net.Conn, c Config) (Session, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	fc := newFrameConn(conn, c.WithDefaults().WriteTimeout)
	s, err := yamux.Server(fc, c.yamux())
	if err != nil {
		fc.Close()
		return nil, fmt.Errorf("start yamux server: %w", err)
	}
	return &yamuxSession{s: s, conn: conn}, nil
}

type yamuxSession struct {
	s    *yamux.Session
	conn net.Conn // what the session runs on, as the caller gave it
}

var _ Session = (*yamuxSession)(nil)

func (y *yamuxSession) OpenStream(ctx context.Context) (Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s, err := y.s.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	return newYamuxStream(s), nil
}

func (y *yamuxSession) AcceptStream(ctx context.Context) (Stream, error) {
	s, err := y.s.AcceptStreamWithContext(ctx)
	if err != nil {
		return nil, err
	}
	return newYamuxStream(s), nil
}

func (y *yamuxSession) Close() error          { return y.s.Close() }
func (y *yamuxSession) Done() <-chan struct{} { return y.s.CloseChan() }
func (y *yamuxSession) NumStreams() int       { return y.s.NumStreams() }
func (y *yamuxSession) LocalAddr() net.Addr   { return y.s.LocalAddr() }
func (y *yamuxSession) RemoteAddr() net.Addr  { return y.s.RemoteAddr() }
func (y *yamuxSession) Transport() string     { return TransportTCP }

func (y *yamuxSession) connectionState() (tls.ConnectionState, bool) {
	if c, ok := y.conn.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return c.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// ErrSessionClosed is returned by a stream's Read when its session ended
// under it, so that a cut tunnel is not mistaken for a clean end of stream.
var ErrSessionClosed = errors.New("tunnel session closed")

// yamuxStream adapts a yamux stream. yamux's Close only ends the write
// direction (it sends FIN); Close here also ends local reads, so that a
// reader blocked on the stream returns net.ErrClosed.
type yamuxStream struct {
	*yamux.Stream
	closed atomic.Bool
}

func newYamuxStream(s *yamux.Stream) *yamuxStream { return &yamuxStream{Stream: s} }

func (s *yamuxStream) CloseWrite() error { return s.Stream.Close() }

func (s *yamuxStream) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.Stream.Close()
	s.Stream.SetReadDeadline(time.Unix(1, 0))
	return err
}

func (s *yamuxStream) Read(p []byte) (int, error) {
	if s.closed.Load() {
		return 0, net.ErrClosed
	}
	n, err := s.Stream.Read(p)
	if err != nil && s.closed.Load() {
		return n, net.ErrClosed
	}
	if err == io.EOF && s.Stream.Session().IsClosed() {
		// yamux ends every stream with EOF when the session dies; that is
		// not the peer's clean end of stream.
		return n, ErrSessionClosed
	}
	return n, err
}

func (s *yamuxStream) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return nil
	}
	return s.Stream.SetReadDeadline(t)
}

func (s *yamuxStream) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.Stream.SetWriteDeadline(t)
}

type logfLogger func(format string, args ...any)

func (l logfLogger) Print(v ...any)                 { l("%s", fmt.Sprint(v...)) }
func (l logfLogger) Printf(format string, v ...any) { l(format, v...) }
func (l logfLogger) Println(v ...any)               { l("%s", fmt.Sprint(v...)) }
