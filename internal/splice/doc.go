// Package splice copies bytes both ways between two connections: with
// pooled buffers, half-close passed on (or not), an idle timeout that
// moves while either direction moves, and progress callbacks for byte
// counters. The connector splices tunnel streams to services with it, the
// gateway agent connections to tunnel streams, the agent local connections
// to the gateway.
package splice
