// Package e2e holds the end-to-end tests of the whole relay path: agent ->
// gateway (mTLS) -> tunnel -> connector -> core, with real listeners on
// loopback and real TLS. It has no code of its own beyond test helpers.
package e2e
