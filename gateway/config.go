package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/config"
	"github.com/sekisho/sekisho/tunnel"
)

// Config configures a gateway. The zero value of every field means the
// default written in its comment.
type Config struct {
	// ID names this gateway in logs and in the welcome sent to connectors.
	// Default "gateway".
	ID string `yaml:"id"`
	// Listen is the TCP address for agents and connectors. Default ":443".
	Listen string `yaml:"listen"`
	// TLS is the gateway's own certificate.
	TLS TLSConfig `yaml:"tls"`
	// Tenants lists the tenants this gateway serves. At least one.
	Tenants []TenantConfig `yaml:"tenants"`
	// Limits bounds what peers may cost.
	Limits Limits `yaml:"limits"`
	// Tunnel tunes the connectors' sessions.
	Tunnel tunnel.Config `yaml:"tunnel"`
	// QUIC is the UDP side: agents' HTTP/3 and connectors' QUIC tunnels.
	QUIC QUICConfig `yaml:"quic"`
	// ProxyProtocol, when it lists trusted addresses, expects a PROXY v2
	// header on connections from them (an L4 load balancer).
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
	// RetryAfter is the Retry-After hint sent with 503 when a tenant has no
	// connector; the header carries a random value between it and twice it,
	// so waiting agents come back spread out. Default 5s.
	RetryAfter time.Duration `yaml:"retry_after"`
	// ShutdownTimeout bounds the drain of in-flight requests on SIGTERM.
	// Default 30s. (Used by the command; Shutdown takes a context.)
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// Admin is the admin listener (metrics, health, status page). In
	// config files it defaults to 127.0.0.1:9180; in the Go API an empty
	// listen address means none.
	Admin admin.Config `yaml:"admin"`
	// AccessLog configures the per-request log.
	AccessLog AccessLog `yaml:"access_log"`

	// Listener, when set, is used instead of listening on Listen.
	Listener net.Listener `yaml:"-"`
	// Certificate, when set, is served instead of TLS.CertFile/KeyFile.
	Certificate *tls.Certificate `yaml:"-"`
	// CertSource, when set, is the certificate source (tests, embedding).
	CertSource certs.Source `yaml:"-"`
	// HTTPListener, when set, is the HTTP-01 / redirect listener.
	HTTPListener net.Listener `yaml:"-"`
	// Logger receives the gateway's logs. Default: none.
	Logger *zap.Logger `yaml:"-"`
	// AccessLogger receives the access log (unsampled). Default Logger.
	AccessLogger *zap.Logger `yaml:"-"`
	// Registry receives the metrics. Default: a new registry with the Go
	// and process collectors.
	Registry *prometheus.Registry `yaml:"-"`
	// Version is reported on the status page.
	Version string `yaml:"-"`
	// ReloadSource, when set, gives the admin API's reload action a new
	// config (the command re-reads the file).
	ReloadSource func() (Config, error) `yaml:"-"`
	// Now is the clock used to check certificates. Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// TLSConfig names the gateway's public certificate: files (reloaded when
// they change) or ACME.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ACME, when set, gets and renews the certificate instead of files.
	ACME *ACMEConfig `yaml:"acme"`
	// Curves are the key exchange groups in order of preference, e.g.
	// [X25519, P256]. Default: Go's, which start with the post-quantum
	// hybrid X25519MLKEM768 (more CPU per handshake; see docs).
	Curves []string `yaml:"curves"`
}

// TenantConfig is one tenant the gateway serves.
type TenantConfig struct {
	// Name is the tenant's name, as in its agents' certificates.
	Name string `yaml:"name"`
	// ConnectorPins are the SPKI pins (sha256/BASE64) of the connector keys
	// allowed to speak for this tenant. List old and new while rotating.
	ConnectorPins []auth.Pin `yaml:"connector_pins"`
	// AgentCAPins, when set, restrict the tenant's pushed trust bundle to
	// CA certificates with these SPKI pins: a stolen connector key then
	// cannot make the gateway trust another CA.
	AgentCAPins []auth.Pin `yaml:"agent_ca_pins"`
}

// ACMEConfig gets the gateway's certificate from an ACME CA (certmagic).
type ACMEConfig struct {
	// Domains to hold certificates for; the first is the main name.
	Domains []string `yaml:"domains"`
	// CA is the ACME directory URL. Default Let's Encrypt.
	CA string `yaml:"ca"`
	// Email is the account contact (optional).
	Email string `yaml:"email"`
	// Storage is the directory for the account, keys and certificates;
	// replicas may share it. Required.
	Storage string `yaml:"storage"`
	// TrustedRootsFile (PEM) is trusted for the CA's own HTTPS, for a
	// private CA (step-ca, Pebble).
	TrustedRootsFile string `yaml:"trusted_roots_file"`
	// TrustedRoots, when set, is trusted too (tests, embedding).
	TrustedRoots *x509.CertPool `yaml:"-"`
	// Challenges enabled: http-01 and/or tls-alpn-01. Default both.
	Challenges []string `yaml:"challenges"`
	// HTTPListen is the HTTP-01 listener, which answers challenges and
	// redirects everything else to https. Default ":80"; "off" for none.
	HTTPListen string `yaml:"http_listen"`
	// HTTPPort and TLSALPNPort are the ports the CA reaches (when a port
	// forward sits in front). Default 80 and 443.
	HTTPPort    int `yaml:"http_port"`
	TLSALPNPort int `yaml:"tls_alpn_port"`
	// Profile is an ACME profile of the CA (e.g. "shortlived").
	Profile string `yaml:"profile"`
	// RenewalWindow is the fraction of the lifetime, before expiry, in
	// which the certificate is renewed. Default 1/3.
	RenewalWindow float64 `yaml:"renewal_window"`
	// RenewCheckInterval is how often renewal is considered. Default
	// certmagic's (10m).
	RenewCheckInterval time.Duration `yaml:"renew_check_interval"`
}

// Limits bounds what one peer can cost the gateway.
type Limits struct {
	// HandshakeTimeout bounds the TCP-to-authenticated part of every
	// connection: PROXY header, TLS handshake, connector hello. Default 10s.
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// MaxHandshakes is how many connections may be in that phase at once;
	// beyond it, accepting pauses. Default 1024.
	MaxHandshakes int `yaml:"max_handshakes"`
	// ReadHeaderTimeout bounds reading an agent's request headers. Default 10s.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxHeaderBytes bounds an agent's request headers. Default 64KiB.
	MaxHeaderBytes int `yaml:"max_header_bytes" config:"bytes"`
	// IdleTimeout closes an agent connection idle for that long. Default 2m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxRequestsPerDevice bounds one device's concurrent requests; more get
	// 429. Default 32.
	MaxRequestsPerDevice int `yaml:"max_requests_per_device"`
	// EnrollPerSource and EnrollPerTenant bound enrollment requests per
	// minute from one address and for one tenant; more get 429. Defaults
	// 30 and 600.
	EnrollPerSource int `yaml:"enroll_per_source"`
	EnrollPerTenant int `yaml:"enroll_per_tenant"`
	// MaxConnectsPerDevice bounds one device's concurrent CONNECT streams
	// (raw TCP services); more get 429. Default 8.
	MaxConnectsPerDevice int `yaml:"max_connects_per_device"`
	// StreamTimeout bounds opening a tunnel stream and the connector's
	// answer. Default 10s.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
	// ResponseHeaderTimeout bounds the wait for a service's response
	// headers. Default 2m.
	ResponseHeaderTimeout time.Duration `yaml:"response_header_timeout"`
	// IdleStreamTimeout closes a pooled tunnel stream idle for that long.
	// Keep it below the services' own keep-alive timeout. Default 30s.
	IdleStreamTimeout time.Duration `yaml:"idle_stream_timeout"`
	// MaxIdleStreams is how many idle streams are pooled per tenant and
	// service. Default 256.
	MaxIdleStreams int `yaml:"max_idle_streams"`
}

// AccessLog configures the per-request log: tenant, device, service,
// status, bytes, duration.
type AccessLog struct {
	// Sample is the fraction of requests logged: 0 none (default), 1 all.
	Sample float64 `yaml:"sample"`
}

// ProxyProtocol configures PROXY protocol v2 on the listener.
type ProxyProtocol struct {
	// Trusted lists the load balancers' addresses; connections from them
	// must begin with a PROXY v2 header, others are served as they are.
	Trusted []netip.Prefix `yaml:"trusted"`
}

// withDefaults returns a copy of c with defaults filled in.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	if c.ID == "" {
		c.ID = "gateway"
	}
	if c.Listen == "" {
		c.Listen = ":443"
	}
	def(&c.RetryAfter, 5*time.Second)
	def(&c.ShutdownTimeout, 30*time.Second)
	l := &c.Limits
	def(&l.HandshakeTimeout, 10*time.Second)
	def(&l.ReadHeaderTimeout, 10*time.Second)
	def(&l.IdleTimeout, 2*time.Minute)
	def(&l.StreamTimeout, 10*time.Second)
	def(&l.ResponseHeaderTimeout, 2*time.Minute)
	def(&l.IdleStreamTimeout, 30*time.Second)
	defInt(&l.MaxHandshakes, 1024)
	defInt(&l.MaxHeaderBytes, 64<<10)
	defInt(&l.MaxRequestsPerDevice, 32)
	defInt(&l.MaxConnectsPerDevice, 8)
	defInt(&l.EnrollPerSource, 30)
	defInt(&l.EnrollPerTenant, 600)
	defInt(&l.MaxIdleStreams, 256)
	c.Tunnel = c.Tunnel.WithDefaults()
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.AccessLogger == nil {
		c.AccessLogger = c.Logger
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate checks c and names the first field of each problem.
func (c *Config) Validate() error {
	var errs []error
	errs = append(errs, c.validateTLS()...)
	if _, err := certs.ParseCurves(c.TLS.Curves); err != nil {
		errs = append(errs, config.Field("tls.curves", err))
	}
	if len(c.Tenants) == 0 {
		errs = append(errs, config.Fieldf("tenants", "at least one tenant is required"))
	}
	errs = append(errs, c.validateTenants()...)
	if err := c.Tunnel.Validate(); err != nil {
		errs = append(errs, config.Field("tunnel", err))
	}
	errs = append(errs, c.Limits.validate()...)
	if c.AccessLog.Sample < 0 || c.AccessLog.Sample > 1 {
		errs = append(errs, config.Fieldf("access_log.sample", "want 0 to 1, got %v", c.AccessLog.Sample))
	}
	return errors.Join(errs...)
}

func (c *Config) validateTenants() []error {
	var errs []error
	names := map[string]bool{}
	pins := map[auth.Pin]string{}
	for i, t := range c.Tenants {
		path := config.Index("tenants", i)
		if t.Name == "" {
			errs = append(errs, config.Fieldf(config.Key(path, "name"), "required"))
		} else if err := auth.ValidTenant(t.Name); err != nil {
			errs = append(errs, config.Field(config.Key(path, "name"), err))
		} else if names[t.Name] {
			errs = append(errs, config.Fieldf(config.Key(path, "name"), "tenant %q listed twice", t.Name))
		}
		names[t.Name] = true
		if len(t.ConnectorPins) == 0 {
			errs = append(errs, config.Fieldf(config.Key(path, "connector_pins"), "at least one pin is required"))
		}
		for j, p := range t.ConnectorPins {
			if other, ok := pins[p]; ok && other != t.Name {
				errs = append(errs, config.Fieldf(config.Index(config.Key(path, "connector_pins"), j),
					"pin already belongs to tenant %q: a connector key speaks for one tenant", other))
			}
			pins[p] = t.Name
		}
	}
	return errs
}

func (l *Limits) validate() []error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"handshake_timeout", int64(l.HandshakeTimeout)},
		{"max_handshakes", int64(l.MaxHandshakes)},
		{"read_header_timeout", int64(l.ReadHeaderTimeout)},
		{"max_header_bytes", int64(l.MaxHeaderBytes)},
		{"idle_timeout", int64(l.IdleTimeout)},
		{"max_requests_per_device", int64(l.MaxRequestsPerDevice)},
		{"max_connects_per_device", int64(l.MaxConnectsPerDevice)},
		{"stream_timeout", int64(l.StreamTimeout)},
		{"response_header_timeout", int64(l.ResponseHeaderTimeout)},
		{"idle_stream_timeout", int64(l.IdleStreamTimeout)},
		{"max_idle_streams", int64(l.MaxIdleStreams)},
	} {
		if f.v < 0 {
			errs = append(errs, config.Fieldf(config.Key("limits", f.name), "must not be negative"))
		}
	}
	return errs
}

func (c *Config) validateTLS() []error {
	a := c.TLS.ACME
	files := c.TLS.CertFile != "" || c.TLS.KeyFile != ""
	switch {
	case c.Certificate != nil || c.CertSource != nil:
		return nil
	case a != nil && files:
		return []error{config.Fieldf("tls", "set cert_file/key_file or acme, not both")}
	case a == nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == ""):
		return []error{config.Fieldf("tls", "cert_file and key_file are required (or acme)")}
	case a == nil:
		return nil
	}
	var errs []error
	if len(a.Domains) == 0 {
		errs = append(errs, config.Fieldf("tls.acme.domains", "at least one domain is required"))
	}
	if a.Storage == "" {
		errs = append(errs, config.Fieldf("tls.acme.storage", "required: a directory for the account and certificates"))
	}
	for i, ch := range a.Challenges {
		if ch != "http-01" && ch != "tls-alpn-01" {
			errs = append(errs, config.Fieldf(config.Index("tls.acme.challenges", i), "want http-01 or tls-alpn-01, got %q", ch))
		}
	}
	return errs
}

// challenge reports whether an ACME challenge type is enabled.
func (a *ACMEConfig) challenge(name string) bool {
	return len(a.Challenges) == 0 || slices.Contains(a.Challenges, name)
}
