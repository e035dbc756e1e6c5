// Package tunnel is sekisho's wire: the multiplexed session that a
// connector dials out to a gateway, and what travels on it.
//
// A Session carries Streams, over either of two transports with the same
// behaviour: yamux over TLS 1.3 on TCP (Dial, NewYamuxClient,
// NewYamuxServer) or QUIC streams on UDP (DialQUIC, ListenQUIC).
// On top of the transport the package defines the control stream (hello,
// version negotiation, pushed snapshots), the versioned header that begins
// every stream the gateway opens and the status reply the connector sends
// before any byte flows, plus the pieces both ends need: a reconnect
// backoff and a splice that copies between two connections with pooled
// buffers and an idle timeout.
//
// The protocol is written down in README.md next to this file.
//
// tunnel imports no other package of sekisho.
package tunnel
