package connector

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/tunnel"
)

// Transports a connector can use toward a gateway.
const (
	TransportTCP  = "tcp"  // yamux over TLS
	TransportQUIC = "quic" // QUIC streams
	TransportAuto = "auto" // QUIC, falling back to TCP while UDP is blocked
)

// quicState remembers, per gateway, when QUIC last failed, so that auto
// mode does not wait for a QUIC timeout on every redial.
type quicState struct {
	failedAt atomic.Int64 // unix nanos; 0: never
}

// dial opens a session to t with the configured transport. In auto mode it
// tries QUIC unless it failed within QUICRetry, and falls back to TCP.
func (c *Connector) dial(ctx context.Context, t *target) (tunnel.Session, error) {
	cfg := c.current().cfg
	switch cfg.Transport {
	case TransportQUIC:
		return c.dialQUIC(ctx, t, cfg.Timeouts.Handshake)
	case TransportAuto:
		if last := t.quic.failedAt.Load(); last == 0 || time.Since(time.Unix(0, last)) > cfg.QUICRetry {
			sess, err := c.dialQUIC(ctx, t, cfg.QUICTimeout)
			if err == nil {
				return sess, nil
			}
			t.quic.failedAt.Store(time.Now().UnixNano())
			c.log.Info("QUIC unreachable, falling back to TCP", zap.String("gateway", t.addr), zap.Error(err))
		}
	}
	return tunnel.Dial(ctx, tunnel.DialConfig{Address: t.addr, TLS: t.tls, Timeout: cfg.Timeouts.Handshake,
		Dialer: c.cfg.Dialer, Session: c.cfg.Tunnel})
}

func (c *Connector) dialQUIC(ctx context.Context, t *target, timeout time.Duration) (tunnel.Session, error) {
	if t.quicAddr == "" {
		return nil, fmt.Errorf("gateway %s has no quic_address", t.addr)
	}
	return tunnel.DialQUIC(ctx, tunnel.DialConfig{Address: t.quicAddr, TLS: t.tls, Timeout: timeout, Session: c.cfg.Tunnel})
}

// probeQUIC runs while an auto-mode session is on TCP: every QUICRetry
// (jittered, so the slots do not all move at once) it tries QUIC, and
// returns the first QUIC session that comes up, or nil when ctx ends.
func (c *Connector) probeQUIC(ctx context.Context, t *target) tunnel.Session {
	for {
		cfg := c.current().cfg
		wait := cfg.QUICRetry/2 + time.Duration(rand.Int64N(int64(cfg.QUICRetry)))
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		sess, err := c.dialQUIC(ctx, t, cfg.QUICTimeout)
		if err == nil {
			t.quic.failedAt.Store(0)
			return sess
		}
		t.quic.failedAt.Store(time.Now().UnixNano())
	}
}

// drain tells the gateway a replaced session is going (it opens no new
// streams on it and lets its idle ones go), keeps it until its streams are
// done or maxDrain passes, then closes it.
func drain(ctx context.Context, sess tunnel.Session, ctrl *tunnel.Control, maxDrain time.Duration) {
	ctrl.Send(tunnel.MsgDrain, struct{}{})
	deadline := time.NewTimer(maxDrain)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for sess.NumStreams() > 1 { // the control stream stays
		select {
		case <-ctx.Done():
		case <-deadline.C:
		case <-sess.Done():
		case <-tick.C:
			continue
		}
		break
	}
	sess.Close()
}

// quicAddress is the gateway's QUIC tunnel address: the configured one,
// or the TCP address's host with the default tunnel port.
func quicAddress(g GatewayConfig) string {
	if g.QUICAddress != "" {
		return g.QUICAddress
	}
	host, _, err := net.SplitHostPort(g.Address)
	if err != nil {
		return ""
	}
	return net.JoinHostPort(host, DefaultQUICPort)
}

// DefaultQUICPort is the gateway's default QUIC tunnel port.
const DefaultQUICPort = "4443"
