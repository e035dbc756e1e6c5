package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// URIScheme is the scheme of the URI SAN that names an agent's tenant and
// device: sekisho://TENANT/device/DEVICE.
const URIScheme = "sekisho"

// ErrNoIdentity means a certificate carries no sekisho URI SAN.
var ErrNoIdentity = errors.New("certificate names no sekisho device")

// Principal is the identity behind a verified agent certificate.
type Principal struct {
	Tenant   string
	DeviceID string
	// CertSHA256 is the SHA-256 of the leaf certificate's DER bytes.
	CertSHA256 [sha256.Size]byte
}

// DeviceURI returns the URI SAN that names device id of tenant.
func DeviceURI(tenant, id string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: tenant, Path: "/device/" + id}
}

// ParseDeviceURI extracts tenant and device id from a sekisho URI SAN.
func ParseDeviceURI(u *url.URL) (tenant, id string, err error) {
	if u.Scheme != URIScheme {
		return "", "", fmt.Errorf("uri %q: scheme is not %s", u, URIScheme)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", fmt.Errorf("uri %q: unexpected user, port, query or fragment", u)
	}
	id, ok := strings.CutPrefix(u.Path, "/device/")
	if !ok {
		return "", "", fmt.Errorf("uri %q: path is not /device/ID", u)
	}
	if err := ValidTenant(u.Host); err != nil {
		return "", "", fmt.Errorf("uri %q: %w", u, err)
	}
	if err := ValidDeviceID(id); err != nil {
		return "", "", fmt.Errorf("uri %q: %w", u, err)
	}
	// One spelling only: no escapes, no empty query or fragment markers.
	if u.String() != DeviceURI(u.Host, id).String() || u.RawPath != "" || u.ForceQuery || u.Opaque != "" {
		return "", "", fmt.Errorf("uri %q: not in canonical form", u)
	}
	return u.Host, id, nil
}

// PrincipalOf returns the principal named by cert. It checks the name's
// syntax only: callers must have verified the chain first (see VerifyAgent).
// Exactly one sekisho URI SAN is allowed.
func PrincipalOf(cert *x509.Certificate) (Principal, error) {
	var p Principal
	found := 0
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		found++
		tenant, id, err := ParseDeviceURI(u)
		if err != nil {
			return Principal{}, err
		}
		p.Tenant, p.DeviceID = tenant, id
	}
	switch found {
	case 0:
		return Principal{}, ErrNoIdentity
	case 1:
		p.CertSHA256 = sha256.Sum256(cert.Raw)
		return p, nil
	default:
		return Principal{}, errors.New("certificate names more than one sekisho device")
	}
}

// TenantOf returns the tenant named by cert without checking anything else;
// the gateway uses it to pick the bundle to verify the chain against.
func TenantOf(cert *x509.Certificate) (string, error) {
	p, err := PrincipalOf(cert)
	return p.Tenant, err
}
