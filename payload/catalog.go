package payload

import (
	"errors"
	"fmt"
	"strings"
)

// Catalog is what a tenant's snapshot carries to the gateways: the signed
// entries and the policy that says which other requests are payload.
type Catalog struct {
	Entries []Signed    `json:"entries,omitempty"`
	Relay   RelayPolicy `json:"relay"`
}

// RelayPolicy classifies uncatalogued requests as payload, so that they
// cross the tunnel under the tenant's relay budget rather than on the
// pooled streams of management requests.
type RelayPolicy struct {
	// PathPrefixes: requests under these paths are payload.
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	// SizeThreshold: a GET or HEAD response whose Content-Length is above
	// it is payload; 0 means no threshold.
	SizeThreshold int64 `json:"size_threshold,omitempty"`
}

// Validate checks the policy.
func (p *RelayPolicy) Validate() error {
	var errs []error
	for i, pre := range p.PathPrefixes {
		if err := ValidPath(pre); err != nil {
			errs = append(errs, &FieldError{fmt.Sprintf("path_prefixes[%d]", i), err})
		}
	}
	if p.SizeThreshold < 0 {
		errs = append(errs, fieldf("size_threshold", "must not be negative"))
	}
	return errors.Join(errs...)
}

// IsPayloadPath reports whether path falls under one of the prefixes.
func (p *RelayPolicy) IsPayloadPath(path string) bool {
	for _, pre := range p.PathPrefixes {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// Index is a catalog ready to answer requests by exact path.
type Index struct {
	entries map[string]*Signed
	relay   RelayPolicy
}

// NewIndex checks a catalog's entries (not their signatures: the agents
// verify those) and indexes them by path. A duplicate path is an error.
func NewIndex(c *Catalog) (*Index, error) {
	ix := &Index{entries: make(map[string]*Signed, len(c.Entries)), relay: c.Relay}
	var errs []error
	for i := range c.Entries {
		e := &c.Entries[i]
		if err := e.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("entries[%d]: %w", i, err))
			continue
		}
		if e.KeyID == "" || len(e.Signature) == 0 || e.Expires.IsZero() {
			errs = append(errs, fmt.Errorf("entries[%d] (%s): not signed", i, e.Path))
			continue
		}
		if ix.entries[e.Path] != nil {
			errs = append(errs, fmt.Errorf("entries[%d]: path %s listed twice", i, e.Path))
			continue
		}
		ix.entries[e.Path] = e
	}
	if err := c.Relay.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("relay: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("payload catalog: %w", err)
	}
	return ix, nil
}

// Lookup returns the entry for an exact path, or nil.
func (ix *Index) Lookup(path string) *Signed {
	if ix == nil {
		return nil
	}
	return ix.entries[path]
}

// Policy returns the relay policy.
func (ix *Index) Policy() *RelayPolicy {
	if ix == nil {
		return &RelayPolicy{}
	}
	return &ix.relay
}

// Len is the number of entries.
func (ix *Index) Len() int {
	if ix == nil {
		return 0
	}
	return len(ix.entries)
}
