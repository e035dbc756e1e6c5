package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/tunnel"
)

// tunnelSession is one connector session serving a tenant.
type tunnelSession struct {
	sess        tunnel.Session
	draining    atomic.Bool // the connector is replacing it: no new streams
	pin         auth.Pin
	tenant      *tenant
	connectorID string
	version     int
	since       time.Time
}

// verifyConnector is the VerifyConnection of the tunnel TLS policy: the
// connector's key must be pinned by some tenant. Which tenant it may speak
// for is checked against its hello.
func (s *Server) verifyConnector(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("connector presented no certificate")
	}
	pin := auth.PinOfCert(cs.PeerCertificates[0])
	if _, ok := s.current().pins[pin]; !ok {
		return fmt.Errorf("connector key %s is not pinned for any tenant", pin)
	}
	return nil
}

// serveTunnel runs a connector's session until it ends. release frees the
// handshake slot once the hello is answered.
func (s *Server) serveTunnel(ctx context.Context, conn *tls.Conn, release func()) {
	sess, err := tunnel.NewYamuxServer(conn, s.cfg.Tunnel)
	if err != nil {
		s.log.Error("start tunnel session", zap.String("remote_addr", conn.RemoteAddr().String()), zap.Error(err))
		conn.Close()
		release()
		return
	}
	s.serveSession(ctx, sess, auth.PinOfCert(conn.ConnectionState().PeerCertificates[0]), release)
}

// serveSession runs an authenticated connector session of any transport
// until it ends: hello, then pushes.
func (s *Server) serveSession(ctx context.Context, sess tunnel.Session, pin auth.Pin, release func()) {
	log := s.log.With(zap.String("remote_addr", sess.RemoteAddr().String()), zap.Stringer("connector_pin", pin))
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	ts, ctrl, err := s.admitConnector(ctx, sess, pin, log)
	release()
	if err != nil {
		log.Warn("connector refused", zap.Error(err))
		return
	}
	log = log.With(zap.String("tenant", ts.tenant.name), zap.String("connector_id", ts.connectorID),
		zap.String("transport", sess.Transport()))
	log.Info("connector session up", zap.Int("protocol_version", ts.version))
	defer func() {
		ts.tenant.removeSession(ts)
		log.Info("connector session down", zap.Int("tenant_sessions", ts.tenant.numSessions()))
	}()
	err = s.controlLoop(ts, ctrl, log)
	if err != nil && ctx.Err() == nil {
		log.Info("control stream ended", zap.Error(err))
	}
}

// refuseLinger is how long a refused connector's session is kept open for
// it to read the refusal.
const refuseLinger = 2 * time.Second

// admitConnector reads the hello and accepts the session only when the
// connector's pin belongs to the tenant it names.
func (s *Server) admitConnector(ctx context.Context, sess tunnel.Session, pin auth.Pin, log *zap.Logger) (*tunnelSession, *tunnel.Control, error) {
	timeout := s.current().cfg.Limits.HandshakeTimeout
	ctrl, hello, err := tunnel.AcceptControl(ctx, sess, timeout)
	if err != nil {
		return nil, nil, err
	}
	refuse := func(reason string, err error) (*tunnelSession, *tunnel.Control, error) {
		// The connector learns the reason word; details stay in our log.
		// Give it a moment to read the refusal and hang up itself, so the
		// word is not lost to a session torn down under it.
		if ctrl.Send(tunnel.MsgRefuse, &tunnel.Refuse{Reason: reason}) == nil {
			linger := time.NewTimer(refuseLinger)
			select {
			case <-sess.Done():
			case <-linger.C:
			case <-ctx.Done():
			}
			linger.Stop()
		}
		ctrl.Close()
		return nil, nil, fmt.Errorf("%s: %w", reason, err)
	}
	version, err := tunnel.NegotiateVersion(hello)
	if err != nil {
		return refuse("version", err)
	}
	t := s.tenant(hello.Tenant)
	if t == nil || !t.allows(pin) {
		return refuse("not_permitted", fmt.Errorf("connector %q (pin %s) may not speak for tenant %q",
			hello.ConnectorID, pin, hello.Tenant))
	}
	if err := ctrl.Send(tunnel.MsgWelcome, &tunnel.Welcome{Version: version, GatewayID: s.cfg.ID}); err != nil {
		return nil, nil, err
	}
	s.metrics.sessionsOpened.WithLabelValues(t.name, sess.Transport()).Inc()
	return &tunnelSession{sess: sess, pin: pin, tenant: t, connectorID: connectorID(hello.ConnectorID),
		version: version, since: s.cfg.Now()}, ctrl, nil
}

// controlLoop reads the connector's pushes until the session ends. The
// session serves streams once a snapshot from it has been validated.
func (s *Server) controlLoop(ts *tunnelSession, ctrl *tunnel.Control, log *zap.Logger) error {
	for {
		t, body, err := ctrl.Receive(tunnel.MaxSnapshotLen, time.Time{})
		if err != nil {
			return err
		}
		switch t {
		case tunnel.MsgSnapshot:
			var snap tunnel.Snapshot
			if err := tunnel.Decode(t, body, &snap); err != nil {
				return err
			}
			ack := s.applySnapshot(ts, &snap, log)
			if err := ctrl.Send(tunnel.MsgSnapshotAck, ack); err != nil {
				return err
			}
		case tunnel.MsgDrain:
			ts.draining.Store(true)
			// Pooled streams are kept per service, not per session: let
			// every idle one go, so the draining session's close at once.
			s.current().relay.transport.closeIdle()
			log.Info("connector session draining")
		default:
			log.Debug("ignoring unknown control message", zap.Uint8("type", uint8(t)))
		}
	}
}

func (s *Server) applySnapshot(ts *tunnelSession, snap *tunnel.Snapshot, log *zap.Logger) *tunnel.SnapshotAck {
	ack := &tunnel.SnapshotAck{Epoch: snap.Epoch, Version: snap.Version}
	err := ts.tenant.apply(snap, s.cfg.Now())
	switch {
	case err == nil:
		s.metrics.snapshots.WithLabelValues(ts.tenant.name, "applied").Inc()
		s.reverify(ts.tenant)
		log.Info("snapshot applied", zap.String("epoch", snap.Epoch), zap.Uint64("version", snap.Version),
			zap.Int("services", len(snap.Services)), zap.Int("cas", len(snap.TrustBundle)))
	case errors.Is(err, errStale):
		s.metrics.snapshots.WithLabelValues(ts.tenant.name, "stale").Inc()
		log.Debug("snapshot not newer", zap.String("epoch", snap.Epoch), zap.Uint64("version", snap.Version))
	default:
		s.metrics.snapshots.WithLabelValues(ts.tenant.name, "refused").Inc()
		s.events.Add(admin.Event{Time: time.Now(), Kind: "snapshot refused", Reason: err.Error(), Tenant: ts.tenant.name})
		log.Error("snapshot refused", zap.String("epoch", snap.Epoch), zap.Uint64("version", snap.Version), zap.Error(err))
		ack.Error = err.Error()
		return ack
	}
	ack.Accepted = true
	ts.tenant.addSession(ts)
	return ack
}

// connectorID bounds the id a connector names itself with: it becomes a
// metrics label and a log field.
func connectorID(id string) string {
	if len(id) > 64 {
		id = id[:64]
	}
	if id == "" {
		return "unnamed"
	}
	return strings.ToValidUTF8(id, "?")
}
