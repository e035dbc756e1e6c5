// Package admin is the operator's side door of each role: an HTTP
// listener, on loopback by default and apart from the agent port, that
// serves health and readiness probes, Prometheus metrics, a JSON status
// API and a status page built into the binary, optional pprof, and the
// authenticated actions (reload, later device actions) a role registers.
//
// It also holds the small in-memory time series and event log that the
// status page plots. The roles own their admin servers; this package only
// gives them the shape.
package admin
