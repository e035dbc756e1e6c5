// Package certs makes and loads certificates.
//
// It holds the minimal per-tenant CA that signs agent certificates (ECDSA
// P-256, short-lived, with a URI SAN naming tenant and device, backdated for
// PC clock skew), connector identities (a key whose SPKI pin the gateway
// config lists), PEM file helpers that keep private keys owner-only, and the
// TLS 1.3 configuration shared by every role.
//
// certs imports only auth.
package certs
