package auth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// Refusal reasons for agent certificates. They are short, stable words for
// logs and metrics labels; the peer only ever sees a generic refusal.
var (
	ErrNoCertificate   = errors.New("no client certificate")
	ErrUnknownTenant   = errors.New("tenant not served")
	ErrUntrusted       = errors.New("certificate not signed by the tenant's CA")
	ErrExpired         = errors.New("certificate expired or not yet valid")
	ErrWrongKeyUsage   = errors.New("certificate not valid for client authentication")
	ErrMalformedClient = errors.New("malformed client certificate")
	ErrRevoked         = errors.New("certificate revoked")
)

// VerifyAgent verifies an agent's certificate chain (leaf first, as sent in
// the TLS handshake) against roots, the trust bundle of the tenant the leaf
// names, at time now, and returns its principal. The tenant named in the
// leaf must equal tenant: a bundle never vouches for another tenant's
// devices.
func VerifyAgent(chain []*x509.Certificate, tenant string, roots *x509.CertPool, now time.Time) (Principal, error) {
	if len(chain) == 0 {
		return Principal{}, ErrNoCertificate
	}
	if roots == nil {
		// x509 would fall back to the system roots: fail closed instead.
		return Principal{}, fmt.Errorf("%w: no trust bundle", ErrUnknownTenant)
	}
	leaf := chain[0]
	p, err := PrincipalOf(leaf)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrMalformedClient, err)
	}
	if p.Tenant != tenant {
		return Principal{}, fmt.Errorf("%w: certificate names tenant %q, bundle is %q's", ErrUntrusted, p.Tenant, tenant)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return Principal{}, fmt.Errorf("%w: valid %s to %s", ErrExpired,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return Principal{}, classify(err)
	}
	return p, nil
}

func classify(err error) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		switch inv.Reason {
		case x509.Expired:
			return fmt.Errorf("%w: %w", ErrExpired, err)
		case x509.IncompatibleUsage:
			return fmt.Errorf("%w: %w", ErrWrongKeyUsage, err)
		}
	}
	return fmt.Errorf("%w: %w", ErrUntrusted, err)
}

// Reason returns a short label for a refusal error from VerifyAgent, for
// logs and metrics.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNoCertificate):
		return "no_certificate"
	case errors.Is(err, ErrUnknownTenant):
		return "unknown_tenant"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrWrongKeyUsage):
		return "wrong_key_usage"
	case errors.Is(err, ErrMalformedClient):
		return "malformed"
	case errors.Is(err, ErrRevoked):
		return "revoked"
	case errors.Is(err, ErrUntrusted):
		return "untrusted"
	default:
		return "other"
	}
}
