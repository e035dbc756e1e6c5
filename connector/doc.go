// Package connector is the LAN role: it dials out to one or more gateways,
// keeps several tunnel sessions to each, pushes its tenant's snapshot (the
// agents' trust bundle and the service list) on every session's control
// stream, and serves each stream a gateway opens by dialing the internal
// service the stream names and splicing bytes both ways, without parsing
// HTTP.
//
// No inbound port is ever opened toward the LAN: every connection starts
// here. Lost sessions are redialed with jittered exponential backoff.
package connector
