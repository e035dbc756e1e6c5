package tunnel

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/quic-go/quic-go"
)

// DialConfig says how a connector reaches a gateway's tunnel port.
type DialConfig struct {
	// Address is host:port of the gateway.
	Address string
	// TLS is the client configuration: the connector's certificate and
	// how it verifies the gateway. NextProtos is set by Dial and DialQUIC.
	TLS *tls.Config
	// Timeout bounds the TCP connect and the TLS handshake, or the QUIC
	// handshake. Default 10s.
	Timeout time.Duration
	// Dialer dials the TCP connection; default a net.Dialer. Dial only.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// QUICTransport is the UDP socket DialQUIC sends from, shared by every
	// session dialed on it and left open when they end. Default: a socket
	// of the session's own, bound to the address the kernel routes the
	// gateway from, and closed with the session. DialQUIC only.
	QUICTransport *quic.Transport
	// Session tunes the session.
	Session Config
}

// start checks dc and bounds ctx by dc.Timeout (default 10s): what both
// Dial and DialQUIC do first.
func (dc DialConfig) start(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if dc.TLS == nil {
		return nil, nil, fmt.Errorf("dial gateway %s: no TLS configuration", dc.Address)
	}
	if err := dc.Session.Validate(); err != nil {
		return nil, nil, err
	}
	timeout := dc.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, cancel, nil
}

// Dial connects to a gateway and starts the client end of a yamux
// session. The caller then opens the control stream (see OpenControl).
func Dial(ctx context.Context, dc DialConfig) (Session, error) {
	ctx, cancel, err := dc.start(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	dial := dc.Dialer
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext
	}
	raw, err := dial(ctx, "tcp", dc.Address)
	if err != nil {
		return nil, fmt.Errorf("dial gateway %s: %w", dc.Address, err)
	}
	conf := dc.TLS.Clone()
	conf.NextProtos = []string{ALPN}
	conn := tls.Client(raw, conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with gateway %s: %w", dc.Address, err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != ALPN {
		conn.Close()
		return nil, fmt.Errorf("gateway %s did not accept the tunnel protocol (ALPN %q)", dc.Address, p)
	}
	s, err := NewYamuxClient(conn, dc.Session)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// OpenControl opens the control stream of a fresh client session, sends
// hello and waits up to timeout for the gateway's welcome. A refusal is
// returned as a *RefusedError.
func OpenControl(ctx context.Context, s Session, h Hello, timeout time.Duration) (*Control, *Welcome, error) {
	st, err := s.OpenStream(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("open control stream: %w", err)
	}
	c := NewControl(st, timeout)
	if err := c.Send(MsgHello, &h); err != nil {
		st.Close()
		return nil, nil, err
	}
	w, err := readWelcome(c, time.Now().Add(timeout))
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return c, w, nil
}

func readWelcome(c *Control, deadline time.Time) (*Welcome, error) {
	t, body, err := c.Receive(MaxHelloLen, deadline)
	if err != nil {
		return nil, fmt.Errorf("read welcome: %w", err)
	}
	switch t {
	case MsgWelcome:
		var w Welcome
		if err := Decode(t, body, &w); err != nil {
			return nil, err
		}
		if w.Version < MinProtocolVersion || w.Version > MaxProtocolVersion {
			return nil, fmt.Errorf("gateway chose protocol version %d, this end speaks %d..%d",
				w.Version, MinProtocolVersion, MaxProtocolVersion)
		}
		return &w, nil
	case MsgRefuse:
		var r Refuse
		if err := Decode(t, body, &r); err != nil {
			return nil, err
		}
		return nil, &RefusedError{Refuse: r}
	default:
		return nil, fmt.Errorf("unexpected control message %d before welcome", t)
	}
}

// RefusedError is a gateway's refusal of a session.
type RefusedError struct{ Refuse Refuse }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("gateway refused the session: %s: %s", e.Refuse.Reason, e.Refuse.Message)
}

// AcceptControl accepts the control stream of a fresh server session and
// reads the hello, all within timeout. The caller checks the hello and
// answers with MsgWelcome or MsgRefuse.
func AcceptControl(ctx context.Context, s Session, timeout time.Duration) (*Control, *Hello, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	st, err := s.AcceptStream(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("accept control stream: %w", err)
	}
	c := NewControl(st, timeout)
	deadline, _ := ctx.Deadline()
	t, body, err := c.Receive(MaxHelloLen, deadline)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("read hello: %w", err)
	}
	if t != MsgHello {
		st.Close()
		return nil, nil, fmt.Errorf("first control message is type %d, not hello", t)
	}
	var h Hello
	if err := Decode(t, body, &h); err != nil {
		st.Close()
		return nil, nil, err
	}
	return c, &h, nil
}

// HasALPN reports whether protos offers the tunnel protocol.
func HasALPN(protos []string) bool { return slices.Contains(protos, ALPN) }
