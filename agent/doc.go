// Package agent is the program on the remote PC.
//
// It enrolls the PC (Enroll: a P-256 key generated here and never sent, a
// CSR and a one-time token posted to a gateway's enrollment endpoint, with
// the operator's approval awaited when the tenant asks for it), keeps its
// certificate fresh (Agent.Renew, run by Agent.Run at RenewAt of the
// certificate's lifetime, also after expiry within the connector's grace
// period), and lets unmodified management software reach the tenant's core
// through localhost:
//
//   - TCP port forwards: each local connection becomes a CONNECT to a named
//     service through the gateway (Forward);
//   - an HTTP proxy: absolute-form http:// requests are re-sent to the
//     gateway as HTTPS requests with the original Host, and CONNECT to a
//     mapped host:port becomes a CONNECT to a service (HTTPProxyConfig).
//
// Everything goes to the configured gateways, tried in order and sticking
// to the last one that worked (Client), with one exception: a payload
// redirect whose catalog entry verifies against the tenant's catalog keys
// is followed to the sources the entry names (PayloadFollower), and the
// download is checked against the signed digest before the software gets
// its end. Local listeners are loopback-only unless a listener says
// AllowRemote: an agent must not become a relay for its LAN.
//
// HTTP requests (HTTPClient, the proxy's http://) go over TCP, HTTP/3 or
// auto as Config.Transport says; QUIC connections follow the PC across
// networks (internal/netwatch and the roamer); CONNECT tunnels and
// enrollment always use TCP.
//
// The protocol of enrollment and renewal is docs/ENROLLMENT.md. The
// identity lives in Config.StateDir: agent.key (owner-only; on Windows a
// protected DACL for the owner and SYSTEM), agent.pem and
// catalog-keys.json, each replaced atomically.
//
// RunAsService runs the agent under the Windows service manager.
//
// agent imports auth, certs, payload and internal packages only: never
// tunnel, gateway or connector.
package agent
