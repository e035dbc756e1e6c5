package tunnel

import (
	"errors"
	"fmt"
	"time"
)

// Config tunes a tunnel session, over either transport. The zero value
// means the documented defaults. Fields named QUIC... apply to QUIC
// sessions only; AcceptBacklog, StreamCloseTimeout and Logf to yamux only.
type Config struct {
	// StreamWindow is the largest receive window of one stream, in bytes.
	// One stream cannot move faster than StreamWindow per round trip, so it
	// is sized for WAN links: 8 MiB is ~1.3 Gbit/s at 50 ms. It also bounds
	// what a slow reader can make this side buffer per stream. QUIC grants
	// it whole from the start (initial = maximum window). Default 8 MiB;
	// at least 256 KiB.
	StreamWindow int `yaml:"stream_window" config:"bytes"`
	// KeepAliveInterval is how often an idle session is pinged. Default 5s.
	KeepAliveInterval time.Duration `yaml:"keepalive_interval"`
	// WriteTimeout bounds every write to the connection and every ping's
	// answer; a peer that stops reading for that long is dead. A dead peer
	// is noticed within KeepAliveInterval + WriteTimeout, which is also a
	// QUIC session's idle timeout. Default 5s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// AcceptBacklog is how many streams may wait to be accepted; more are
	// refused. yamux only. Default 1024.
	AcceptBacklog int `yaml:"accept_backlog"`
	// StreamCloseTimeout is how long a stream closed on this side waits for
	// the peer's close before it is reset. yamux only: a QUIC stream's
	// Close resets the peer's writes at once. Default 5m.
	StreamCloseTimeout time.Duration `yaml:"stream_close_timeout"`
	// QUICMaxStreams is how many streams the peer may have open at once on
	// a QUIC session; its next open waits until one of them ends. Default
	// 10000 (quic-go's own default is 100).
	QUICMaxStreams int `yaml:"quic_max_streams"`
	// QUICConnectionWindow is the receive window of a whole QUIC
	// connection, in bytes: all its streams together never make this side
	// buffer more, and all together move at most this much per round trip.
	// Default 4 × StreamWindow; from StreamWindow to 4 GiB.
	QUICConnectionWindow int `yaml:"quic_connection_window" config:"bytes"`
	// QUICHandshakeTimeout bounds a QUIC handshake, dialed or accepted.
	// Default 10s.
	QUICHandshakeTimeout time.Duration `yaml:"quic_handshake_timeout"`
	// Logf receives the transport library's own diagnostics. yamux only:
	// quic-go logs only when QUIC_GO_LOG_LEVEL is set in the environment.
	// Default: none.
	Logf func(format string, args ...any) `yaml:"-"`
}

const minStreamWindow = 256 << 10

// WithDefaults returns a copy of c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.StreamWindow == 0 {
		c.StreamWindow = 8 << 20
	}
	if c.KeepAliveInterval == 0 {
		c.KeepAliveInterval = 5 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 5 * time.Second
	}
	if c.AcceptBacklog == 0 {
		c.AcceptBacklog = 1024
	}
	if c.StreamCloseTimeout == 0 {
		c.StreamCloseTimeout = 5 * time.Minute
	}
	if c.QUICMaxStreams == 0 {
		c.QUICMaxStreams = 10000
	}
	if c.QUICConnectionWindow == 0 {
		c.QUICConnectionWindow = 4 * c.StreamWindow
	}
	if c.QUICHandshakeTimeout == 0 {
		c.QUICHandshakeTimeout = 10 * time.Second
	}
	return c
}

// Validate reports the first field of c that is out of range.
func (c Config) Validate() error {
	switch {
	case c.StreamWindow != 0 && (c.StreamWindow < minStreamWindow || c.StreamWindow > 1<<30):
		return fmt.Errorf("stream_window: want 256KiB to 1GiB, got %d", c.StreamWindow)
	case c.KeepAliveInterval < 0:
		return errors.New("keepalive_interval: must not be negative")
	case c.WriteTimeout < 0:
		return errors.New("write_timeout: must not be negative")
	case c.AcceptBacklog < 0:
		return errors.New("accept_backlog: must not be negative")
	case c.StreamCloseTimeout < 0:
		return errors.New("stream_close_timeout: must not be negative")
	case c.QUICMaxStreams < 0:
		return errors.New("quic_max_streams: must not be negative")
	case c.QUICHandshakeTimeout < 0:
		return errors.New("quic_handshake_timeout: must not be negative")
	}
	if w := c.QUICConnectionWindow; w != 0 {
		if sw := c.WithDefaults().StreamWindow; w < sw || int64(w) > 4<<30 {
			return fmt.Errorf("quic_connection_window: want stream_window (%d) to 4GiB, got %d", sw, w)
		}
	}
	return nil
}
