package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/tunnel"
)

// runSession dials one session, says hello, pushes the snapshot and serves
// streams until the session ends. established reports whether the gateway
// welcomed it.
func (c *Connector) runSession(ctx context.Context, g gatewayTarget, log *zap.Logger) (established bool, err error) {
	sess, err := tunnel.Dial(ctx, tunnel.DialConfig{
		Address: g.addr, TLS: g.tls, Timeout: c.cfg.Timeouts.Handshake,
		Dialer: c.cfg.Dialer, Session: c.cfg.Tunnel,
	})
	if err != nil {
		return false, err
	}
	defer sess.Close()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()

	hello := tunnel.Hello{
		MinVersion: tunnel.MinProtocolVersion, MaxVersion: tunnel.MaxProtocolVersion,
		Tenant: c.cfg.Tenant, ConnectorID: c.cfg.ID, Software: "sekisho " + Version,
	}
	ctrl, welcome, err := tunnel.OpenControl(ctx, sess, hello, c.cfg.Timeouts.Handshake)
	if err != nil {
		return false, err
	}
	if err := ctrl.Send(tunnel.MsgSnapshot, c.snapshot); err != nil {
		return true, err
	}
	log = log.With(zap.String("gateway_id", welcome.GatewayID), zap.String("transport", sess.Transport()))
	log.Info("gateway session up", zap.Int("protocol_version", welcome.Version))

	var wg sync.WaitGroup
	defer wg.Wait()
	var serving atomic.Bool // counted in Sessions once the gateway took a snapshot
	defer func() {
		if serving.Load() {
			c.up.Add(-1)
		}
	}()
	wg.Go(func() {
		err := c.readControl(ctrl, log, func() {
			if !serving.Swap(true) {
				c.up.Add(1)
			}
		})
		if err != nil && ctx.Err() == nil {
			log.Debug("control stream ended", zap.Error(err))
		}
		sess.Close() // no control stream, no session
	})
	return true, c.acceptStreams(ctx, sess, &wg, log)
}

// readControl logs what the gateway says about our snapshots and calls
// accepted for each snapshot it took.
func (c *Connector) readControl(ctrl *tunnel.Control, log *zap.Logger, accepted func()) error {
	for {
		t, body, err := ctrl.Receive(tunnel.MaxHelloLen, time.Time{})
		if err != nil {
			return err
		}
		if t != tunnel.MsgSnapshotAck {
			log.Debug("ignoring unknown control message", zap.Uint8("type", uint8(t)))
			continue
		}
		var ack tunnel.SnapshotAck
		if err := tunnel.Decode(t, body, &ack); err != nil {
			return err
		}
		if ack.Accepted {
			accepted()
			log.Info("snapshot accepted", zap.Uint64("version", ack.Version))
		} else {
			log.Error("gateway refused our snapshot", zap.Uint64("version", ack.Version), zap.String("reason", ack.Error))
		}
	}
}

// acceptStreams serves every stream the gateway opens until the session
// ends.
func (c *Connector) acceptStreams(ctx context.Context, sess tunnel.Session, wg *sync.WaitGroup, log *zap.Logger) error {
	for {
		st, err := sess.AcceptStream(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept stream: %w", err)
		}
		wg.Go(func() { c.serveStream(ctx, st, log) })
	}
}

// serveStream reads a stream's header, dials the service it names and
// splices the two.
func (c *Connector) serveStream(ctx context.Context, st tunnel.Stream, log *zap.Logger) {
	to := c.cfg.Timeouts
	h, err := tunnel.ReadRequest(st, to.StreamHeader)
	if err != nil {
		log.Warn("bad stream header", zap.Error(err))
		return
	}
	refuse := func(status tunnel.Status, msg string) {
		tunnel.Answer(st, &tunnel.Reply{Status: status, Message: msg}, to.StreamHeader)
		st.Close()
	}
	if h.Kind != tunnel.KindHTTP {
		log.Warn("stream refused", zap.Stringer("kind", h.Kind), zap.String("reason", "unsupported kind"))
		refuse(tunnel.StatusBadHeader, "unsupported stream kind "+h.Kind.String())
		return
	}
	svc := c.services[h.Service]
	if svc == nil {
		log.Warn("stream refused", zap.String("service", h.Service), zap.String("reason", "unknown service"))
		refuse(tunnel.StatusUnknownService, "unknown service")
		return
	}
	conn, err := svc.dial(ctx, c.cfg.Dialer, to.Dial)
	if err != nil {
		log.Warn("service unreachable", zap.String("service", h.Service), zap.Error(err))
		refuse(tunnel.StatusUnavailable, "service unreachable")
		return
	}
	if err := tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusOK}, to.StreamHeader); err != nil {
		conn.Close()
		st.Close()
		return
	}
	// HTTP streams are pooled keep-alive connections that the gateway
	// never half-closes: EOF from either side ends both.
	_, _, err = tunnel.SpliceWhole(st, conn, to.StreamIdle)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Debug("stream ended", zap.String("service", h.Service), zap.Error(err))
	}
}
