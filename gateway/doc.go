// Package gateway is the DMZ role: it terminates agents' mutually
// authenticated TLS, accepts connectors' tunnels on the same port, and
// relays each agent request down its tenant's tunnel.
//
// One TCP listener serves every kind of client; the TLS policy is chosen
// per ClientHello by ALPN (tunnel or agent). Agents must present a client
// certificate that chains to the trust bundle their tenant's connector
// pushed, checked in VerifyConnection on every handshake, resumed ones
// included. Connectors are known by the SPKI pins listed per tenant in the
// config, and speak only for their own tenant.
//
// Each tenant's pushed state (trust bundle, services) is one versioned
// snapshot, swapped atomically and kept when the connector leaves: agents of
// a tenant without a connector get 503 with Retry-After, never a hang.
// Agent requests are relayed by an httputil.ReverseProxy whose transport
// treats tunnel streams as pooled keep-alive connections; identity headers
// are set in Rewrite after any copies the agent sent are stripped.
package gateway
