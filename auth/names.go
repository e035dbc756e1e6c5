package auth

import (
	"fmt"
)

// ValidTenant reports whether s can name a tenant: a DNS label of 1 to 63
// lowercase letters, digits and hyphens, not starting or ending with a
// hyphen. Tenants appear in URI SANs as the host part.
func ValidTenant(s string) error {
	if err := label(s, 63); err != nil {
		return fmt.Errorf("tenant name %q: %w", s, err)
	}
	return nil
}

// ValidService reports whether s can name a service (same syntax as a
// tenant name).
func ValidService(s string) error {
	if err := label(s, 63); err != nil {
		return fmt.Errorf("service name %q: %w", s, err)
	}
	return nil
}

// ValidDeviceID reports whether s can name a device: 1 to 128 characters
// of letters, digits, '-', '_' and '.'.
func ValidDeviceID(s string) error {
	if len(s) == 0 || len(s) > 128 {
		return fmt.Errorf("device id %q: want 1 to 128 characters", s)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("device id %q: not allowed", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("device id %q: character %q not allowed", s, c)
		}
	}
	return nil
}

func label(s string, max int) error {
	if len(s) == 0 || len(s) > max {
		return fmt.Errorf("want 1 to %d characters", max)
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return fmt.Errorf("must not start or end with '-'")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z') && !(c >= '0' && c <= '9') && c != '-' {
			return fmt.Errorf("character %q not allowed (use a-z, 0-9, '-')", c)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
