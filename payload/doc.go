// Package payload keeps patch payloads out of the tunnel.
//
// A tenant's payload catalog maps exact request paths to download sources
// in preference order (vendor CDN URLs, mirrors, or Relay through the
// tunnel) with the payload's SHA-256 and size. The connector signs each
// entry with the tenant's catalog signing key (Ed25519), which never
// leaves the LAN, and pushes the catalog to the gateways in the tenant's
// snapshot. For a catalogued path the gateway answers with a redirect that
// carries the signed entry in Sekisho-Payload-* headers (WriteRedirect);
// the agent checks the signature against the tenant's key set
// (ParseRedirect, Verify) and the download against the digest (Verifier),
// so a gateway that is taken over can neither point agents elsewhere nor
// replay an entry past its expiry.
//
// What still crosses the tunnel as payload runs under a Budget: at most so
// many downloads at once and a token bucket of bytes per second, enforced
// where the bytes leave the LAN (the connector).
//
// The package imports no other package of the project.
package payload
