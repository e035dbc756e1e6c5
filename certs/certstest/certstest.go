package certstest

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// CA returns a fresh CA for tenant.
func CA(tb testing.TB, tenant string) *certs.CA {
	tb.Helper()
	ca, err := certs.NewCA(tenant, time.Now(), 0)
	if err != nil {
		tb.Fatalf("certstest: new CA: %v", err)
	}
	return ca
}

// Agent issues an agent certificate for device id, valid now.
func Agent(tb testing.TB, ca *certs.CA, id string) tls.Certificate {
	tb.Helper()
	return AgentAt(tb, ca, id, time.Now(), 0)
}

// AgentAt issues an agent certificate as if now were the given time, for
// the given lifetime (default when zero); use it for expired certificates.
func AgentAt(tb testing.TB, ca *certs.CA, id string, now time.Time, lifetime time.Duration) tls.Certificate {
	tb.Helper()
	key, err := certs.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := ca.IssueAgent(certs.AgentRequest{DeviceID: id, PublicKey: key.Public(), Now: now, Lifetime: lifetime})
	if err != nil {
		tb.Fatalf("certstest: issue agent: %v", err)
	}
	return certs.TLSCertificate(leaf, key)
}

// Server is a gateway server certificate for 127.0.0.1, ::1 and localhost
// and the pool that trusts it.
type Server struct {
	Cert  tls.Certificate
	Roots *x509.CertPool
	CA    *certs.CA
}

// NewServer issues a server certificate from a fresh CA.
func NewServer(tb testing.TB) *Server {
	tb.Helper()
	ca := CA(tb, "public")
	key, err := certs.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := ca.IssueServer(key.Public(), []string{"localhost", "127.0.0.1", "::1"}, time.Now(), 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return &Server{Cert: certs.TLSCertificate(leaf, key), Roots: roots, CA: ca}
}

// Connector returns a connector identity and its pin.
func Connector(tb testing.TB) (tls.Certificate, auth.Pin) {
	tb.Helper()
	key, err := certs.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := certs.SelfSigned(key, "connector", time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return cert, auth.PinOfCert(cert.Leaf)
}
