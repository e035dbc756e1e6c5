package config

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// gateway is a config shaped like sekisho's, without a Validate method.
type gateway struct {
	common  `yaml:",inline"`
	Name    string            `yaml:"name"`
	Listen  netip.AddrPort    `yaml:"listen"`
	Port    int               `yaml:"port"`
	Debug   bool              `yaml:"debug"`
	Ratio   float64           `yaml:"ratio"`
	Small   int8              `yaml:"small"`
	Count   uint16            `yaml:"count"`
	Limits  limits            `yaml:"limits"`
	Backup  *limits           `yaml:"backup"`
	Tenants []tenant          `yaml:"tenants"`
	Routes  map[string]route  `yaml:"routes"`
	Labels  map[string]string `yaml:"labels,omitempty"`
	Tags    []string
	Ignored string `yaml:"-"`
	hidden  string // unexported: skipped by the decoder
}

type common struct {
	LogLevel string `yaml:"log_level"`
}

type limits struct {
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	MaxBody     int64         `yaml:"max_body" config:"bytes"`
	Buffer      uint32        `yaml:"buffer" config:"bytes"`
}

type tenant struct {
	Name          string         `yaml:"name"`
	Allow         []netip.Prefix `yaml:"allow"`
	ConnectorPins []pin          `yaml:"connector_pins"`
	Timeout       *time.Duration `yaml:"timeout"`
}

// Validate checks one tenant; paths are relative to the tenant.
func (t tenant) Validate() error {
	var errs []error
	if t.Name == "" {
		errs = append(errs, Fieldf("name", "required"))
	}
	seen := make(map[pin]bool)
	for i, p := range t.ConnectorPins {
		if seen[p] {
			errs = append(errs, Fieldf(Index("connector_pins", i), "duplicate pin %q", p))
		}
		seen[p] = true
	}
	return errors.Join(errs...)
}

type route struct {
	Backend string `yaml:"backend"`
	Weight  int    `yaml:"weight"`
}

// pin is a TextUnmarshaler: eight hex digits.
type pin string

func (p *pin) UnmarshalText(b []byte) error {
	if _, err := hex.DecodeString(string(b)); err != nil || len(b) != 8 {
		return fmt.Errorf("invalid pin %q: want 8 hex digits", b)
	}
	*p = pin(b)
	return nil
}

// checked is gateway with a Validate method, reusing tenant.Validate
// through Prefix.
type checked struct {
	gateway `yaml:",inline"`
}

func (c *checked) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, Fieldf("name", "required"))
	}
	if c.Backup != nil && c.Backup.IdleTimeout <= 0 {
		errs = append(errs, Fieldf(Key("backup", "idle_timeout"), "must be positive"))
	}
	for i, t := range c.Tenants {
		errs = append(errs, Prefix(Index("tenants", i), t.Validate()))
	}
	for name, r := range c.Routes {
		if r.Backend == "" {
			err := Fieldf(Key(Key("routes", name), "backend"), "required")
			errs = append(errs, fmt.Errorf("route %s: %w", name, err))
		}
	}
	if len(c.Tenants) == 0 && len(c.Routes) == 0 {
		errs = append(errs, errors.New("at least one tenant or route is required"))
	}
	return errors.Join(errs...)
}

// unsupported has a field kind the decoder does not handle.
type unsupported struct {
	C chan int `yaml:"c"`
}
