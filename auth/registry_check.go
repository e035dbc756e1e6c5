package auth

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// SerialHex writes a certificate serial number as the registry keeps it:
// lowercase hexadecimal without leading zeros.
func SerialHex(n *big.Int) string { return n.Text(16) }

// ValidGroup reports whether s can name a device group (same syntax as a
// tenant name).
func ValidGroup(s string) error {
	if err := label(s, 63); err != nil {
		return fmt.Errorf("group name %q: %w", s, err)
	}
	return nil
}

// validSerial checks the form SerialHex writes, at most 20 bytes (RFC 5280).
func validSerial(s string) error {
	if len(s) == 0 || len(s) > 40 || len(s) > 1 && s[0] == '0' {
		return fmt.Errorf("certificate serial %q: want 1 to 40 hex digits without leading zeros", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("certificate serial %q: want lowercase hex", s)
		}
	}
	return nil
}

func validGroups(groups []string) error {
	for _, g := range groups {
		if err := ValidGroup(g); err != nil {
			return err
		}
	}
	return nil
}

// normGroups returns groups sorted, without duplicates and never nil, so
// both databases give back the same thing.
func normGroups(groups []string) []string {
	out := append([]string{}, groups...)
	slices.Sort(out)
	return slices.Compact(out)
}

// dbTime is t as the registry keeps it: UTC, to the microsecond.
func dbTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

func checkTokenRecord(r *TokenRecord) error {
	if err := ValidTenant(r.Tenant); err != nil {
		return err
	}
	if err := ValidTokenID(r.ID); err != nil {
		return err
	}
	switch {
	case len(r.Hash) != 32:
		return errors.New("token hash: want 32 bytes")
	case r.UsesLeft < 1:
		return fmt.Errorf("token uses: want at least 1, got %d", r.UsesLeft)
	case r.ExpiresAt.IsZero() || r.CreatedAt.IsZero():
		return errors.New("token: expiry and creation time required")
	}
	if err := validGroups(r.Groups); err != nil {
		return err
	}
	r.Groups = normGroups(r.Groups)
	r.ExpiresAt, r.CreatedAt = dbTime(r.ExpiresAt), dbTime(r.CreatedAt)
	return nil
}

// checkTokenUse decides whether rec, found for p, may be used at now.
func checkTokenUse(rec TokenRecord, p TokenParts, now time.Time) error {
	switch {
	case !p.Matches(rec.Hash):
		return ErrTokenMismatch
	case !now.Before(rec.ExpiresAt):
		return fmt.Errorf("%w at %s", ErrTokenExpired, rec.ExpiresAt.Format(time.RFC3339))
	case rec.UsesLeft < 1:
		return ErrTokenUsedUp
	}
	return nil
}

func checkDevice(d *Device) error {
	if err := ValidTenant(d.Tenant); err != nil {
		return err
	}
	if err := ValidDeviceID(d.ID); err != nil {
		return err
	}
	switch d.Status {
	case DevicePending, DeviceActive, DeviceRevoked:
	default:
		return fmt.Errorf("device status %q: want pending, active or revoked", d.Status)
	}
	if d.CertSerial != "" {
		if err := validSerial(d.CertSerial); err != nil {
			return err
		}
	}
	if d.CreatedAt.IsZero() {
		return errors.New("device: creation time required")
	}
	if err := validGroups(d.Groups); err != nil {
		return err
	}
	d.Groups = normGroups(d.Groups)
	if d.UpdatedAt.IsZero() {
		d.UpdatedAt = d.CreatedAt
	}
	for _, t := range []*time.Time{&d.CertNotAfter, &d.CreatedAt, &d.UpdatedAt, &d.ApprovedAt, &d.RevokedAt} {
		*t = dbTime(*t)
	}
	return nil
}

// checkDeviceUpdate checks what f did to old in UpdateDevice.
func checkDeviceUpdate(old Device, d *Device) error {
	switch {
	case d.Tenant != old.Tenant || d.ID != old.ID:
		return fmt.Errorf("update device %s: tenant and id cannot change", old.ID)
	case old.Status == DeviceRevoked && d.Status != DeviceRevoked:
		return fmt.Errorf("update device %s: revoked is final", old.ID)
	case old.Status != DeviceRevoked && d.Status == DeviceRevoked:
		return fmt.Errorf("update device %s: revoke with Revoke, which records the certificates", old.ID)
	}
	return checkDevice(d)
}

func checkRevoke(tenant, id string, certs []RevokedCert, now time.Time) error {
	if err := ValidTenant(tenant); err != nil {
		return err
	}
	if err := ValidDeviceID(id); err != nil {
		return err
	}
	if now.IsZero() {
		return errors.New("revoke: time required")
	}
	for _, c := range certs {
		if err := validSerial(c.Serial); err != nil {
			return err
		}
		if c.NotAfter.IsZero() {
			return fmt.Errorf("revoke certificate %s: NotAfter required", c.Serial)
		}
	}
	return nil
}

func checkAudit(e *AuditEvent) error {
	if err := ValidTenant(e.Tenant); err != nil {
		return err
	}
	if e.Time.IsZero() || e.Action == "" {
		return errors.New("audit event: time and action required")
	}
	e.Time = dbTime(e.Time)
	return nil
}

// revocationCutoff is the oldest NotAfter still pushed at now: a cert
// stays while NotAfter+grace >= now, and is rounded to keep it longer.
func revocationCutoff(now time.Time, grace time.Duration) time.Time {
	return now.Add(-grace).UTC().Truncate(time.Microsecond)
}
