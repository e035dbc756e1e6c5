// Package tunneltest makes connected tunnel sessions for tests, over real
// TLS 1.3 on loopback (yamux over TCP: Pair; QUIC over UDP: QUICPair),
// like net/http/httptest does for HTTP servers.
//
// It imports no package of sekisho but tunnel: its certificates are
// throwaway self-signed ones made here.
package tunneltest
