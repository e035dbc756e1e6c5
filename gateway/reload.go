package gateway

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/internal/admin"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	TenantsAdded   []string `json:"tenants_added,omitempty"`
	TenantsRemoved []string `json:"tenants_removed,omitempty"`
	// SessionsClosed counts connector sessions whose pin was removed.
	SessionsClosed int `json:"sessions_closed"`
	// NewHTTPServer is true when agent-facing limits changed: new
	// connections get them, open ones finish under the old.
	NewHTTPServer bool `json:"new_http_server"`
	// NeedRestart lists changed settings that only a restart applies.
	NeedRestart []string `json:"need_restart,omitempty"`
}

// Reload applies a new config without dropping tunnels or agents: tenants
// come and go, connector pins rotate (a session whose pin was removed is
// closed; old and new pins listed together both work), CA pins, limits and
// the access log change. An invalid config changes nothing. Settings only
// a restart can change are reported in NeedRestart and left as they are.
func (s *Server) Reload(cfg Config) (*ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if err := cfg.Validate(); err != nil {
		s.metrics.reloads.WithLabelValues("refused").Inc()
		s.log.Error("reload refused, configuration unchanged", zap.Error(err))
		return nil, err
	}
	cfg = s.inherit(cfg).withDefaults()
	old := s.current()
	res := &ReloadResult{NeedRestart: restartOnly(old.cfg, cfg)}

	var rel *relay
	if relayLimits(old.cfg.Limits) == relayLimits(cfg.Limits) {
		rel = old.relay
	}
	g := s.newGeneration(cfg, old, rel)
	var web *webServer
	if webLimits(s.currentWeb().limits) != webLimits(cfg.Limits) {
		web = s.newWebServer(cfg.Limits)
		res.NewHTTPServer = true
	}
	s.swap(g, web)
	if rel == nil {
		old.relay.retire()
	}
	s.devices.setMax(cfg.Limits.MaxRequestsPerDevice)
	s.connects.setMax(cfg.Limits.MaxConnectsPerDevice)
	res.TenantsAdded, res.TenantsRemoved = tenantDiff(old, g)
	for _, name := range res.TenantsRemoved {
		old.tenants[name].closeAll(s.log)
	}
	for _, t := range g.tenants {
		res.SessionsClosed += t.dropUnpinned(s.log)
		s.recheckCAs(t)
	}
	if fs, ok := s.certs.(*certs.FileSource); ok {
		if err := fs.Reload(); err != nil {
			s.log.Error("certificate files not reloaded, the old certificate stays in service", zap.Error(err))
		}
	}
	s.metrics.reloads.WithLabelValues("ok").Inc()
	s.events.Add(admin.Event{Time: time.Now(), Kind: "reload", Reason: fmt.Sprintf("+%d -%d tenants, %d sessions closed",
		len(res.TenantsAdded), len(res.TenantsRemoved), res.SessionsClosed)})
	s.log.Info("configuration reloaded", zap.Strings("tenants_added", res.TenantsAdded),
		zap.Strings("tenants_removed", res.TenantsRemoved), zap.Int("sessions_closed", res.SessionsClosed),
		zap.Bool("new_http_server", res.NewHTTPServer), zap.Strings("need_restart", res.NeedRestart))
	return res, nil
}

// reloadFromSource is the admin API's reload action.
func (s *Server) reloadFromSource() (any, error) {
	if s.reload == nil {
		return nil, errors.New("this gateway has no config source to reload from")
	}
	cfg, err := s.reload()
	if err != nil {
		s.metrics.reloads.WithLabelValues("refused").Inc()
		s.log.Error("reload refused, configuration unchanged", zap.Error(err))
		return nil, err
	}
	return s.Reload(cfg)
}

// swap installs g (and web, when limits changed). The old HTTP server stops
// taking connections and drains the ones it has.
func (s *Server) swap(g *generation, web *webServer) {
	s.mu.Lock()
	s.gen = g
	oldWeb, running := s.web, s.ln != nil && !s.closed
	if web != nil {
		s.web = web
	}
	s.mu.Unlock()
	if web == nil || !running {
		return
	}
	s.startWeb(web)
	s.wg.Go(func() {
		oldWeb.srv.Shutdown(s.ctx) // returns when its connections are done or the gateway closes
	})
}

// inherit copies the settings that do not come from a config file.
func (s *Server) inherit(cfg Config) Config {
	cfg.Listener, cfg.Certificate, cfg.Logger, cfg.AccessLogger = s.cfg.Listener, s.cfg.Certificate, s.cfg.Logger, s.cfg.AccessLogger
	cfg.Registry, cfg.Now, cfg.Version, cfg.ReloadSource = s.cfg.Registry, s.cfg.Now, s.cfg.Version, s.cfg.ReloadSource
	return cfg
}

// restartOnly names the settings that changed but apply only at start.
func restartOnly(a, b Config) []string {
	var out []string
	for name, same := range map[string]bool{
		"id": a.ID == b.ID, "listen": a.Listen == b.Listen, "tls": reflect.DeepEqual(a.TLS, b.TLS),
		"tunnel":                reflect.DeepEqual(a.Tunnel.WithDefaults(), b.Tunnel.WithDefaults()),
		"admin":                 a.Admin == b.Admin,
		"limits.max_handshakes": a.Limits.MaxHandshakes == b.Limits.MaxHandshakes,
	} {
		if !same {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// relayLimits and webLimits pick the limits baked into a relay and an
// HTTP server.
func relayLimits(l Limits) [4]int64 {
	return [4]int64{int64(l.StreamTimeout), int64(l.ResponseHeaderTimeout), int64(l.IdleStreamTimeout), int64(l.MaxIdleStreams)}
}

func webLimits(l Limits) [4]int64 {
	return [4]int64{int64(l.ReadHeaderTimeout), int64(l.IdleTimeout), int64(l.MaxHeaderBytes), int64(l.MaxRequestsPerDevice)}
}

func tenantDiff(old, g *generation) (added, removed []string) {
	for name := range g.tenants {
		if old.tenants[name] == nil {
			added = append(added, name)
		}
	}
	for name := range old.tenants {
		if g.tenants[name] == nil {
			removed = append(removed, name)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}

// closeAll ends every session and agent connection of a removed tenant.
func (t *tenant) closeAll(log *zap.Logger) {
	t.mu.Lock()
	sessions := slices.Clone(t.sessions)
	conns := make([]liveConn, 0, len(t.conns))
	for _, c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, s := range sessions {
		s.sess.Close()
	}
	for _, c := range conns {
		c.close()
	}
	log.Info("tenant removed: sessions and agent connections closed", zap.String("tenant", t.name),
		zap.Int("sessions", len(sessions)), zap.Int("agent_connections", len(conns)))
}

// dropUnpinned closes the sessions of connectors whose pin the tenant no
// longer lists, and returns how many.
func (t *tenant) dropUnpinned(log *zap.Logger) int {
	t.mu.Lock()
	var drop []*tunnelSession
	for _, s := range t.sessions {
		if !t.allows(s.pin) {
			drop = append(drop, s)
		}
	}
	t.mu.Unlock()
	for _, s := range drop {
		log.Info("connector session closed: its pin was removed", zap.String("tenant", t.name),
			zap.String("connector_id", s.connectorID), zap.Stringer("connector_pin", s.pin))
		s.sess.Close()
	}
	return len(drop)
}

// recheckCAs applies changed agent_ca_pins to the state in force: a bundle
// they no longer allow is dropped (the tenant is unserved until its
// connector pushes one they allow), and live agents are re-verified.
func (s *Server) recheckCAs(t *tenant) {
	st := t.state.Load()
	if st == nil {
		return
	}
	if _, err := t.build(st.snap, st.received); err != nil {
		t.applyMu.Lock()
		t.state.CompareAndSwap(st, nil)
		t.applyMu.Unlock()
		s.log.Error("tenant's trust bundle no longer allowed by its agent_ca_pins; tenant unserved until a new snapshot",
			zap.String("tenant", t.name), zap.Error(err))
	}
	s.reverify(t)
}

// retire lets a replaced relay's pooled streams go.
func (r *relay) retire() { r.close() }
