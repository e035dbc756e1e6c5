// Package proxyproto reads and writes version 2 of the PROXY protocol
// (the binary form of HAProxy's proxy-protocol.txt), the header an L4 load
// balancer puts in front of a TCP stream to tell the server who the client
// really is.
//
// The gateway reads it (ReadHeader, then NewConn) when it sits behind such a
// balancer; the connector writes it (Header.AppendBinary) in front of CONNECT
// streams so that an internal service learns which device is behind them.
//
// A header is untrusted peer input, read before anything else on the
// connection: parsing is strict (signature, version, command, family,
// lengths and TLV layout are all checked, and a CRC32C TLV is verified),
// the size is bounded by MaxHeaderLen, and ReadHeader never reads a byte
// past the header, so the stream can be handed on unbuffered (to a TLS
// server, or to a splice).
//
// Whoever can reach a listener that reads PROXY headers can claim any
// source address. Read them only on listeners that nothing but the
// balancer can reach, never "optionally" (accepting both with and without
// a header lets any client forge its address), and set a read deadline
// before calling ReadHeader: a peer that sends nothing holds it.
//
// Only the binary version 2 is supported, for TCP over IPv4 and IPv6 and
// for connections of unknown origin (UNSPEC); the text version 1, UDP and
// AF_UNIX are not.
package proxyproto
