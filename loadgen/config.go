package loadgen

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/tunnel"
)

// Config describes a load run. The zero value of a field means the
// default written in its comment.
type Config struct {
	// Target is the gateway's host:port.
	Target string
	// ServerName is checked in the gateway's certificate. Default the
	// host of Target.
	ServerName string
	// RootCAs trust the gateway's certificate.
	RootCAs *x509.CertPool
	// CA mints the agents' certificates (tenant and device per agent).
	CA *certs.CA
	// Transport is "tcp" (default) or "quic".
	Transport string
	// HTTP2 makes TCP agents speak HTTP/2 (default HTTP/1.1).
	HTTP2 bool
	// Agents is the number of agents. Default 100.
	Agents int
	// FirstAgent numbers the agents' devices from here (load-000000 by
	// default), so that several loadgen processes make distinct devices.
	FirstAgent int
	// ConnectRate is how many agents connect per second. 0: all at once
	// (bounded by Concurrency).
	ConnectRate float64
	// Concurrency bounds connects in flight. Default 256.
	Concurrency int
	// Duration is how long to hold after the ramp. Default 10s.
	Duration time.Duration
	// RequestRate is the total requests per second over all agents.
	// 0: agents stay idle (apart from KeepAlive).
	RequestRate float64
	// KeepAlive makes idle agents send a small request this often so the
	// gateway does not close them as idle. Default 60s; negative: never.
	KeepAlive time.Duration
	// SmallPath is requested for management requests. Default /api/policy.
	SmallPath string
	// PayloadPath is requested for payload downloads. Default
	// /patches/KB5031356.msu.
	PayloadPath string
	// PayloadFraction is the share of requests that are payload
	// downloads, 0 to 1. Default 0.
	PayloadFraction float64
	// SourceIPs spreads TCP agents over 127.0.0.2 .. 127.0.0.(1+SourceIPs)
	// when Target is on loopback. Default 200; 0 keeps the kernel's choice.
	SourceIPs int
	// AgentsPerSocket is how many QUIC agents share one UDP socket.
	// Default 4000.
	AgentsPerSocket int
	// RequestTimeout bounds one request. Default 30s.
	RequestTimeout time.Duration
	// Curves for the agents' TLS (default Go's).
	Curves []tls.CurveID
	// Reconnect makes an agent whose connection ends (a gateway restart,
	// an idle timeout) come back: it retries a small request, which dials
	// a new connection, with jittered exponential backoff between attempts
	// until one is served or the run ends. Default off: a lost agent stays
	// lost until its next request.
	Reconnect bool
	// ReconnectBackoff spaces the attempts: attempt n waits a random time
	// in [d/2, d), d = min(Max, Min·2^n), so agents that lost the same
	// gateway at the same instant come back spread out. Defaults: Min
	// 250ms, Max 30s (tunnel.Backoff's, as connectors use).
	ReconnectBackoff tunnel.Backoff
	// Progress, when set, receives a line per second.
	Progress io.Writer
}

// FilesNeeded is how many open files the run needs: a TCP agent holds a
// socket of its own, QUIC agents share one UDP socket per AgentsPerSocket;
// plus some for the process itself.
func (c Config) FilesNeeded() uint64 {
	c = c.withDefaults()
	n := c.Agents
	if c.Transport == "quic" {
		n = (c.Agents + c.AgentsPerSocket - 1) / c.AgentsPerSocket
	}
	return uint64(n) + 64
}

func (c Config) withDefaults() Config {
	if c.Transport == "" {
		c.Transport = "tcp"
	}
	if c.Agents == 0 {
		c.Agents = 100
	}
	if c.Concurrency == 0 {
		c.Concurrency = 256
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.SmallPath == "" {
		c.SmallPath = "/api/policy"
	}
	if c.PayloadPath == "" {
		c.PayloadPath = "/patches/KB5031356.msu"
	}
	if c.SourceIPs == 0 {
		c.SourceIPs = 200
	}
	if c.AgentsPerSocket == 0 {
		c.AgentsPerSocket = 4000
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.ServerName == "" {
		c.ServerName, _, _ = net.SplitHostPort(c.Target)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Target == "":
		return errors.New("loadgen: no target")
	case c.CA == nil:
		return errors.New("loadgen: no CA to mint agent certificates")
	case c.Transport != "tcp" && c.Transport != "quic":
		return fmt.Errorf("loadgen: transport %q: want tcp or quic", c.Transport)
	case c.Agents < 0 || c.FirstAgent < 0 || c.ConnectRate < 0 || c.RequestRate < 0 || c.Duration < 0:
		return errors.New("loadgen: counts, rates and durations must not be negative")
	case c.ReconnectBackoff.Min < 0 || c.ReconnectBackoff.Max < 0:
		return errors.New("loadgen: reconnect backoff must not be negative")
	case c.PayloadFraction < 0 || c.PayloadFraction > 1:
		return errors.New("loadgen: payload fraction must be 0 to 1")
	}
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return fmt.Errorf("loadgen: target %q: %w", c.Target, err)
	}
	return nil
}
