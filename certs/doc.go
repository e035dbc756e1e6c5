// Package certs makes and loads certificates.
//
// It holds the minimal per-tenant CA that signs agent certificates (ECDSA
// P-256, short-lived, with a URI SAN naming tenant and device, backdated for
// PC clock skew), connector identities (a key whose SPKI pin the gateway
// config lists), PEM file helpers that keep private keys owner-only, and the
// TLS 1.3 configuration shared by every role.
//
// It also provides the gateway's public certificate as a Source: files
// reloaded on change or SIGHUP, refusing a bad pair and keeping the old one
// (FileSource); ACME through certmagic, with the HTTP-01 handler and the
// acme-tls/1 configuration the gateway's listeners route to (ACMESource);
// or a fixed pair (StaticSource). ExpiryWatcher logs certificates that
// approach expiry and reports the time left for metrics.
//
// certs imports only auth.
package certs
