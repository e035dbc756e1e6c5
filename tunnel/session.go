package tunnel

import (
	"context"
	"net"
)

// Transport names, as they appear in logs, metrics and configs.
const (
	TransportTCP  = "tcp"  // yamux over TLS over TCP
	TransportQUIC = "quic" // QUIC streams
)

// ALPN is the TLS application protocol that marks a connector's tunnel
// connection on the gateway's port.
const ALPN = "sekisho-tunnel"

// Session is one multiplexed tunnel between a connector and a gateway.
// Both ends may open streams: the connector opens the control stream
// first, the gateway opens one stream per relayed connection.
type Session interface {
	// OpenStream opens a new stream to the peer.
	OpenStream(ctx context.Context) (Stream, error)
	// AcceptStream waits for the peer to open a stream.
	AcceptStream(ctx context.Context) (Stream, error)
	// Close tears the session down at once; every stream fails.
	Close() error
	// Done is closed when the session has ended, for whatever reason.
	Done() <-chan struct{}
	// NumStreams is the number of open streams.
	NumStreams() int
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// Transport names the transport (TransportTCP or TransportQUIC).
	Transport() string
}

// Stream is one bidirectional byte stream of a Session.
type Stream interface {
	net.Conn
	// CloseWrite ends the stream's write direction; the peer reads EOF
	// while this side may go on reading.
	CloseWrite() error
}
