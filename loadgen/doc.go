// Package loadgen simulates many remote agents against a real gateway, for
// capacity planning: each agent has its own client certificate and its own
// connection (TLS over TCP, HTTP/1.1 or HTTP/2, or HTTP/3 over QUIC), the
// agents connect at a given rate, then either hold their connections idle
// or issue requests at a given total rate, small management requests and
// payload downloads in a given mix. It reports connect rate, request rate,
// latency percentiles, throughput and errors by kind.
//
// It is meant to run as its own process, so that the gateway's own
// measurements are its own. TCP agents spread their source addresses over
// 127.0.0.x when the target is loopback, so ephemeral ports do not run out;
// QUIC agents share UDP sockets, several thousand agents per socket.
package loadgen
