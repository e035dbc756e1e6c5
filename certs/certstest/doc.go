// Package certstest makes throwaway certificates for tests: tenant CAs,
// agent certificates, a gateway server certificate for loopback, and
// connector identities with their pins.
package certstest
