package certs

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"time"
)

// SelfSigned returns a TLS certificate for key, signed by itself. Connectors
// present one: the gateway trusts the key's SPKI pin, not the certificate.
func SelfSigned(key crypto.Signer, commonName string, now time.Time) (tls.Certificate, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     now.Add(DefaultCALifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("self-sign certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// LoadOrCreateKey reads the private key at path, or, when no file exists
// there, generates a P-256 key and writes it owner-only. created reports
// which happened.
func LoadOrCreateKey(path string) (key crypto.Signer, created bool, err error) {
	key, err = LoadKey(path)
	if err == nil {
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k, err := NewKey()
	if err != nil {
		return nil, false, err
	}
	if err := WriteKey(path, k); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

// IssueServer signs a server certificate for hosts (DNS names or IP
// addresses) with the CA's key. The demo and the tests use it for the
// gateway's public certificate; production gateways use ACME or files.
func (ca *CA) IssueServer(key crypto.PublicKey, hosts []string, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if len(hosts) == 0 {
		return nil, errors.New("issue server certificate: no host names")
	}
	if lifetime <= 0 {
		lifetime = DefaultServerLifetime
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-Backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign server certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// TLSCertificate bundles a leaf, its issuer chain and its key for tls.Config.
func TLSCertificate(leaf *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	for _, ch := range chain {
		c.Certificate = append(c.Certificate, ch.Raw)
	}
	return c
}
