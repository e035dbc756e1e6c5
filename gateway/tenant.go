package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/payload"
	"github.com/sekisho/sekisho/tunnel"
)

// tenant is one tenant's live state: its config, its newest snapshot and
// the connector sessions that serve it.
type tenant struct {
	name    string
	policy  atomic.Pointer[policy] // replaced by a reload
	state   atomic.Pointer[state]
	applyMu sync.Mutex // serialises snapshot replacement

	// Counters for the status page.
	requests, errors atomic.Int64
	// large remembers paths whose responses were above the size threshold.
	large largePaths

	mu       sync.Mutex
	sessions []*tunnelSession
	next     int              // round-robin cursor
	conns    map[any]liveConn // live agent connections, by *tls.Conn or *quic.Conn
}

// state is an immutable view of a tenant's snapshot, ready to serve.
type state struct {
	snap     *tunnel.Snapshot
	roots    *x509.CertPool
	cas      []*x509.Certificate
	routes   []route
	connect  map[string]*tunnel.Service // raw TCP services by name
	revoked  map[string]bool            // serials, lowercase hex
	revokedD map[string]bool            // device ids
	catalog  *payload.Index             // nil: no payload catalog
	received time.Time
}

// policy is what the config says about a tenant.
type policy struct {
	pins   map[auth.Pin]bool
	caPins map[auth.Pin]bool // empty: any CA the connector pushes
}

func newTenant(c TenantConfig) *tenant {
	t := &tenant{name: c.Name, conns: map[any]liveConn{}}
	t.setPolicy(c)
	return t
}

// setPolicy installs the pins of c.
func (t *tenant) setPolicy(c TenantConfig) {
	p := &policy{pins: map[auth.Pin]bool{}, caPins: map[auth.Pin]bool{}}
	for _, pin := range c.ConnectorPins {
		p.pins[pin] = true
	}
	for _, pin := range c.AgentCAPins {
		p.caPins[pin] = true
	}
	t.policy.Store(p)
}

// allows reports whether a connector key may speak for the tenant.
func (t *tenant) allows(pin auth.Pin) bool { return t.policy.Load().pins[pin] }

// errStale marks a snapshot older than the one in force; it is not an
// error of the snapshot itself.
var errStale = errors.New("snapshot is not newer than the one in force")

// apply validates snap and, if it is newer than the state in force (or of
// another epoch), replaces the state. It returns errStale for an older or
// equal snapshot of the same epoch, which leaves the state as it is.
func (t *tenant) apply(snap *tunnel.Snapshot, now time.Time) error {
	st, err := t.build(snap, now)
	if err != nil {
		return err
	}
	t.applyMu.Lock()
	defer t.applyMu.Unlock()
	if cur := t.state.Load(); cur != nil && cur.snap.Epoch == snap.Epoch && snap.Version <= cur.snap.Version {
		return errStale
	}
	t.state.Store(st)
	return nil
}

func (t *tenant) build(snap *tunnel.Snapshot, now time.Time) (*state, error) {
	if snap.Tenant != t.name {
		return nil, fmt.Errorf("snapshot names tenant %q on a session of tenant %q", snap.Tenant, t.name)
	}
	st := &state{snap: snap, roots: x509.NewCertPool(), received: now}
	if len(snap.TrustBundle) == 0 {
		return nil, errors.New("trust bundle is empty")
	}
	for i, der := range snap.TrustBundle {
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("trust bundle certificate %d: %w", i, err)
		}
		if !ca.IsCA {
			return nil, fmt.Errorf("trust bundle certificate %d (%s) is not a CA", i, ca.Subject)
		}
		if caPins := t.policy.Load().caPins; len(caPins) > 0 && !caPins[auth.PinOfCert(ca)] {
			return nil, fmt.Errorf("trust bundle certificate %d (%s, %s) is not among the tenant's agent_ca_pins",
				i, ca.Subject, auth.PinOfCert(ca))
		}
		st.roots.AddCert(ca)
		st.cas = append(st.cas, ca)
	}
	routes, err := buildRoutes(snap.Services)
	if err != nil {
		return nil, err
	}
	st.routes = routes
	st.revoked = make(map[string]bool, len(snap.Revocations))
	st.revokedD = make(map[string]bool, len(snap.Revocations))
	for _, r := range snap.Revocations {
		st.revoked[strings.ToLower(r.Serial)] = true
		if r.DeviceID != "" {
			st.revokedD[r.DeviceID] = true
		}
	}
	if len(snap.Catalog) > 0 {
		if st.catalog, err = decodeCatalog(snap.Catalog); err != nil {
			return nil, err
		}
	}
	st.connect = map[string]*tunnel.Service{}
	for i := range snap.Services {
		if svc := &snap.Services[i]; svc.Connect {
			st.connect[svc.Name] = svc
		}
	}
	return st, nil
}

// addSession makes s available for new streams.
func (t *tenant) addSession(s *tunnelSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !slices.Contains(t.sessions, s) {
		t.sessions = append(t.sessions, s)
	}
}

// removeSession takes s out of service.
func (t *tenant) removeSession(s *tunnelSession) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sessions = slices.DeleteFunc(t.sessions, func(x *tunnelSession) bool { return x == s })
}

// pick returns the live session with the fewest open streams, rotating
// among equals so that new streams spread over every session.
func (t *tenant) pick() *tunnelSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.sessions)
	if n == 0 {
		return nil
	}
	t.next++
	var best, fallback *tunnelSession
	bestStreams := 0
	for i := range n {
		s := t.sessions[(t.next+i)%n]
		select {
		case <-s.sess.Done():
			continue
		default:
		}
		if s.draining.Load() {
			fallback = s // only when nothing else is there
			continue
		}
		if k := s.sess.NumStreams(); best == nil || k < bestStreams {
			best, bestStreams = s, k
		}
	}
	if best == nil {
		return fallback
	}
	return best
}

// numSessions is the number of live sessions serving the tenant. A
// session whose transport has died counts as gone at once, even before
// its owner has taken it out of the list.
func (t *tenant) numSessions() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.liveLocked())
}

func (t *tenant) liveLocked() []*tunnelSession {
	live := make([]*tunnelSession, 0, len(t.sessions))
	for _, s := range t.sessions {
		select {
		case <-s.sess.Done():
		default:
			live = append(live, s)
		}
	}
	return live
}

// route is one service's routing rule.
type route struct {
	svc    tunnel.Service
	host   string // lowercase, no port; empty: any
	prefix string // empty: any
}

// buildRoutes checks the services and orders their rules so that the
// first match is the most specific: host and prefix, then host alone,
// then the longest prefix.
func buildRoutes(svcs []tunnel.Service) ([]route, error) {
	var routes []route
	names := map[string]bool{}
	for _, s := range svcs {
		if err := auth.ValidService(s.Name); err != nil {
			return nil, err
		}
		if names[s.Name] {
			return nil, fmt.Errorf("service %q listed twice", s.Name)
		}
		names[s.Name] = true
		if s.Connect {
			if s.Host != "" || s.PathPrefix != "" || s.HostRewrite != "" {
				return nil, fmt.Errorf("service %q: a CONNECT service has no host, path_prefix or host_rewrite", s.Name)
			}
			continue
		}
		if s.Host == "" && s.PathPrefix == "" {
			return nil, fmt.Errorf("service %q has neither host nor path_prefix", s.Name)
		}
		if s.PathPrefix != "" && !strings.HasPrefix(s.PathPrefix, "/") {
			return nil, fmt.Errorf("service %q: path_prefix %q must start with /", s.Name, s.PathPrefix)
		}
		host := hostOnly(s.Host)
		if s.Host != "" && (host == "" || strings.ContainsAny(host, ":/ ") && net.ParseIP(host) == nil) {
			return nil, fmt.Errorf("service %q: host %q is not a host name", s.Name, s.Host)
		}
		routes = append(routes, route{svc: s, host: host, prefix: s.PathPrefix})
	}
	slices.SortStableFunc(routes, func(a, b route) int {
		if (a.host != "") != (b.host != "") {
			if a.host != "" {
				return -1
			}
			return 1
		}
		return len(b.prefix) - len(a.prefix)
	})
	return routes, nil
}

// match returns the service for a request's host (port stripped,
// lowercase) and clean path, or nil.
func (st *state) match(host, path string) *tunnel.Service {
	for i := range st.routes {
		r := &st.routes[i]
		if r.host != "" && r.host != host {
			continue
		}
		if r.prefix != "" && !pathHasPrefix(path, r.prefix) {
			continue
		}
		return &r.svc
	}
	return nil
}

// pathHasPrefix matches whole path segments: /api matches /api and /api/x
// but not /apix; a prefix ending in / matches anything below it.
func pathHasPrefix(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// earliestExpiry is the first NotAfter among the bundle's CAs.
func (st *state) earliestExpiry() (time.Time, bool) {
	var first time.Time
	for _, ca := range st.cas {
		if first.IsZero() || ca.NotAfter.Before(first) {
			first = ca.NotAfter
		}
	}
	return first, !first.IsZero()
}

// verify checks an agent's chain against the state: the tenant's bundle,
// then the revocations.
func (st *state) verify(chain []*x509.Certificate, tenant string, now time.Time) (auth.Principal, error) {
	var roots *x509.CertPool // nil: no bundle, everything fails closed
	if st != nil {
		roots = st.roots
	}
	p, err := auth.VerifyAgent(chain, tenant, roots, now)
	if err != nil {
		return p, err
	}
	if serial := auth.SerialHex(chain[0].SerialNumber); st.revoked[serial] || st.revokedD[p.DeviceID] {
		return p, fmt.Errorf("%w: device %s, serial %s", auth.ErrRevoked, p.DeviceID, serial)
	}
	return p, nil
}
