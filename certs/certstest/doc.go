// Package certstest makes throwaway certificates for tests: tenant CAs,
// agent certificates, a gateway server certificate for loopback, and
// connector identities with their pins. StartPebble runs a real ACME
// server (Pebble) in-process, with a test DNS zone and relays to the
// test's challenge listeners, for end-to-end ACME tests.
package certstest
