// Package demo runs all of sekisho in one process on loopback: a toy core
// (an HTTP API shaped like an endpoint-management server), a connector, a
// gateway and simulated agents with certificates from a fresh CA. It is the
// embedded default of `sekisho demo` and shows the whole job end to end.
package demo
