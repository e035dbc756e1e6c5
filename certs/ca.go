package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	neturl "net/url"
	"time"

	"github.com/sekisho/sekisho/auth"
)

// Defaults for certificates the CA issues.
const (
	// DefaultAgentLifetime is how long an agent certificate is valid.
	DefaultAgentLifetime = 7 * 24 * time.Hour
	// Backdate is how far before now a certificate's validity starts, so
	// that a PC whose clock runs a little behind accepts it at once.
	Backdate = 5 * time.Minute
	// DefaultCALifetime is how long a new tenant CA is valid.
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
	// DefaultServerLifetime is how long IssueServer's certificates are valid.
	DefaultServerLifetime = 90 * 24 * time.Hour
)

// CA is a tenant's certificate authority for agent certificates.
type CA struct {
	Tenant string
	Cert   *x509.Certificate
	Key    crypto.Signer
}

// NewCA creates a self-signed CA for tenant, valid from now for lifetime
// (DefaultCALifetime when zero).
func NewCA(tenant string, now time.Time, lifetime time.Duration) (*CA, error) {
	if err := auth.ValidTenant(tenant); err != nil {
		return nil, err
	}
	if lifetime == 0 {
		lifetime = DefaultCALifetime
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sekisho agent CA " + tenant, Organization: []string{tenant}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Tenant: tenant, Cert: cert, Key: key}, nil
}

// LoadCA reads a CA certificate and key from PEM files and checks that they
// belong together and that the certificate is a CA.
func LoadCA(tenant, certFile, keyFile string) (*CA, error) {
	if err := auth.ValidTenant(tenant); err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	certs, err := LoadCerts(certFile)
	if err != nil {
		return nil, err
	}
	key, err := LoadKey(keyFile)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("%s: certificate is not a CA", certFile)
	}
	if org := cert.Subject.Organization; len(org) != 1 || org[0] != tenant {
		return nil, fmt.Errorf("%s: CA of %q, not of tenant %q", certFile, org, tenant)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not hold the key of %s", keyFile, certFile)
	}
	return &CA{Tenant: tenant, Cert: cert, Key: key}, nil
}

// AgentRequest describes an agent certificate to issue.
type AgentRequest struct {
	DeviceID  string
	PublicKey crypto.PublicKey
	// Lifetime defaults to DefaultAgentLifetime.
	Lifetime time.Duration
	Now      time.Time
}

// IssueAgent signs an agent certificate naming the CA's tenant and
// req.DeviceID in its URI SAN, valid for client authentication only.
func (ca *CA) IssueAgent(req AgentRequest) (*x509.Certificate, error) {
	if err := auth.ValidDeviceID(req.DeviceID); err != nil {
		return nil, err
	}
	if req.PublicKey == nil {
		return nil, errors.New("issue agent certificate: no public key")
	}
	lifetime := req.Lifetime
	if lifetime == 0 {
		lifetime = DefaultAgentLifetime
	}
	notAfter := req.Now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.DeviceID, Organization: []string{ca.Tenant}},
		URIs:         []*neturl.URL{auth.DeviceURI(ca.Tenant, req.DeviceID)},
		NotBefore:    req.Now.Add(-Backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, req.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign agent certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// NewKey generates an ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}
