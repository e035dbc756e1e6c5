package connector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/internal/admin"
	"github.com/sekisho/sekisho/internal/splice"
	"github.com/sekisho/sekisho/tunnel"
)

// runSession says hello on a fresh session, pushes the snapshot (again
// whenever a reload changes it) and serves streams until the session ends.
// established reports whether the gateway welcomed it. In auto mode, a TCP
// session watches for QUIC to come back; when it does, the QUIC session is
// returned as next, and this one goes on serving its streams in the
// background until it has drained.
func (c *Connector) runSession(ctx context.Context, t *target, sess tunnel.Session, log *zap.Logger) (established bool, next tunnel.Session, err error) {
	st := c.current()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	hello := tunnel.Hello{
		MinVersion: tunnel.MinProtocolVersion, MaxVersion: tunnel.MaxProtocolVersion,
		Tenant: c.cfg.Tenant, ConnectorID: c.cfg.ID, Software: "sekisho " + Version,
	}
	ctrl, welcome, err := tunnel.OpenControl(ctx, sess, hello, st.cfg.Timeouts.Handshake)
	if err != nil {
		stop()
		sess.Close()
		var re *tunnel.RefusedError
		if errors.As(err, &re) {
			c.events.Add(admin.Event{Time: time.Now(), Kind: "session refused", Reason: re.Refuse.Reason, Remote: t.addr})
		}
		return false, nil, err
	}
	log = log.With(zap.String("gateway_id", welcome.GatewayID), zap.String("transport", sess.Transport()))
	log.Info("gateway session up", zap.Int("protocol_version", welcome.Version))

	done := make(chan error, 1)
	// The session's goroutines belong to the connector, not to this call:
	// after a handover they outlive it.
	c.loops.Go(func() { done <- c.serveSession(ctx, t, sess, ctrl, log) })
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	upgrade := make(chan tunnel.Session)
	if st.cfg.Transport == TransportAuto && sess.Transport() == tunnel.TransportTCP {
		c.loops.Go(func() {
			q := c.probeQUIC(probeCtx, t)
			if q == nil {
				return
			}
			select {
			case upgrade <- q:
			case <-probeCtx.Done(): // the TCP session ended first
				q.Close()
			}
		})
	}
	select {
	case err = <-done:
		stop()
		return true, nil, err
	case q := <-upgrade:
		c.loops.Go(func() { drain(ctx, sess, ctrl, time.Minute); stop() })
		return true, q, nil
	}
}

// serveSession runs a welcomed session: snapshot pushes and acks on the
// control stream, streams from the gateway, until the session ends.
func (c *Connector) serveSession(ctx context.Context, t *target, sess tunnel.Session, ctrl *tunnel.Control, log *zap.Logger) error {
	var wg sync.WaitGroup
	var up atomic.Bool // counted in Sessions once the gateway took a snapshot
	var down func()
	var downMu sync.Mutex
	accepted := func() {
		if !up.Swap(true) {
			downMu.Lock()
			down = t.sessionUp(sess.Transport(), time.Now())
			downMu.Unlock()
		}
	}
	wg.Go(func() {
		if err := c.readControl(ctrl, log, t, accepted); err != nil && ctx.Err() == nil {
			log.Debug("control stream ended", zap.Error(err))
		}
		sess.Close() // no control stream, no session
	})
	wg.Go(func() { c.pushSnapshots(ctx, sess, ctrl, log) })
	err := c.acceptStreams(ctx, sess, &wg, log)
	sess.Close()
	wg.Wait()
	downMu.Lock()
	defer downMu.Unlock()
	if down != nil {
		down()
	}
	return err
}

// pushSnapshots sends the snapshot in force, and each new one a reload
// makes, until the session ends.
func (c *Connector) pushSnapshots(ctx context.Context, sess tunnel.Session, ctrl *tunnel.Control, log *zap.Logger) {
	for {
		st := c.current()
		if err := ctrl.Send(tunnel.MsgSnapshot, st.snap); err != nil {
			log.Debug("snapshot not sent", zap.Error(err))
			sess.Close()
			return
		}
		select {
		case <-st.changed:
		case <-sess.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}

// readControl logs what the gateway says about our snapshots and calls
// accepted for each snapshot it took.
func (c *Connector) readControl(ctrl *tunnel.Control, log *zap.Logger, t *target, accepted func()) error {
	for {
		typ, body, err := ctrl.Receive(tunnel.MaxHelloLen, time.Time{})
		if err != nil {
			return err
		}
		if typ != tunnel.MsgSnapshotAck {
			log.Debug("ignoring unknown control message", zap.Uint8("type", uint8(typ)))
			continue
		}
		var ack tunnel.SnapshotAck
		if err := tunnel.Decode(typ, body, &ack); err != nil {
			return err
		}
		if ack.Accepted {
			accepted()
			log.Info("snapshot accepted", zap.Uint64("version", ack.Version))
			continue
		}
		c.metrics.snapshotRefusals.WithLabelValues(t.addr).Inc()
		c.events.Add(admin.Event{Time: time.Now(), Kind: "snapshot refused", Reason: ack.Error, Remote: t.addr})
		log.Error("gateway refused our snapshot", zap.Uint64("version", ack.Version), zap.String("reason", ack.Error))
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
	state := c.current()
	to := state.cfg.Timeouts
	h, err := tunnel.ReadRequest(st, to.StreamHeader)
	if err != nil {
		c.metrics.streams.WithLabelValues("", tunnel.StatusBadHeader.String()).Inc()
		c.metrics.totalRefused.Add(1)
		log.Warn("bad stream header", zap.Error(err))
		return
	}
	if h.Kind == tunnel.KindEnroll && h.Service == tunnel.EnrollService {
		c.serveEnroll(ctx, st, h, log)
		return
	}
	svc, status, reason := c.admit(ctx, state, h)
	if status != tunnel.StatusOK {
		name := ""
		if svc != nil {
			name = svc.name
			svc.errors.Add(1)
		}
		log.Warn("stream refused", zap.Stringer("kind", h.Kind), zap.String("service", h.Service),
			zap.String("device_id", h.DeviceID), zap.String("reason", reason))
		c.refuse(st, &tunnel.Reply{Status: status, Message: reason}, name, to.StreamHeader)
		return
	}
	if h.Kind == tunnel.KindPayload {
		release, ok := c.budget.AcquireWait(ctx, state.cfg.Payloads.Relay.QueueWait)
		if !ok {
			c.metrics.payloadStreams.WithLabelValues("over_budget").Inc()
			log.Debug("payload download over budget", zap.String("service", h.Service))
			c.refuse(st, &tunnel.Reply{Status: tunnel.StatusOverBudget, Message: "too many payload downloads at once",
				RetryAfter: state.cfg.Payloads.Relay.RetryAfter}, svc.name, to.StreamHeader)
			return
		}
		defer release()
		c.metrics.payloadStreams.WithLabelValues("admitted").Inc()
	}
	conn, err := svc.dial(ctx, c.cfg.Dialer, to.Dial)
	if err != nil {
		log.Warn("service unreachable", zap.String("service", h.Service), zap.Error(err))
		svc.errors.Add(1)
		c.refuse(st, &tunnel.Reply{Status: tunnel.StatusUnavailable, Message: "service unreachable"}, svc.name, to.StreamHeader)
		return
	}
	if h.Kind == tunnel.KindConnect && svc.cfg.ProxyProtocol {
		if err := writeProxyHeader(conn, c.cfg.Tenant, h, to.Dial); err != nil {
			log.Warn("PROXY header not sent", zap.String("service", h.Service), zap.Error(err))
			conn.Close()
			c.refuse(st, &tunnel.Reply{Status: tunnel.StatusUnavailable, Message: "service unreachable"}, svc.name, to.StreamHeader)
			return
		}
	}
	if err := tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusOK}, to.StreamHeader); err != nil {
		conn.Close()
		st.Close()
		return
	}
	c.relay(st, conn, svc, h.Kind, to, log)
}

// admit checks a stream's header against the services and, for CONNECT
// streams, the device's groups.
func (c *Connector) admit(ctx context.Context, state *state, h *tunnel.Header) (*service, tunnel.Status, string) {
	if h.Kind != tunnel.KindHTTP && h.Kind != tunnel.KindConnect && h.Kind != tunnel.KindPayload {
		return nil, tunnel.StatusBadHeader, "unsupported stream kind " + h.Kind.String()
	}
	svc := state.services[h.Service]
	if svc == nil {
		return nil, tunnel.StatusUnknownService, "unknown service"
	}
	if svc.cfg.Connect != (h.Kind == tunnel.KindConnect) {
		return svc, tunnel.StatusUnknownService, "service not served for stream kind " + h.Kind.String()
	}
	if h.Kind == tunnel.KindConnect {
		if h.DeviceID == "" {
			return svc, tunnel.StatusBadHeader, "connect stream without a device"
		}
		if ok, why := c.allowed(ctx, svc, h.DeviceID); !ok {
			return svc, tunnel.StatusForbidden, why
		}
	}
	return svc, tunnel.StatusOK, ""
}

// allowed reports whether a device may use a CONNECT service: any device
// when the service lists no groups, else a device in one of them. Without
// a way to learn a device's groups it fails closed.
func (c *Connector) allowed(ctx context.Context, svc *service, device string) (bool, string) {
	if len(svc.cfg.Groups) == 0 {
		return true, ""
	}
	groups, err := c.deviceGroups(ctx, device)
	if err != nil {
		return false, "device groups: " + err.Error()
	}
	for _, g := range groups {
		if slices.Contains(svc.cfg.Groups, g) {
			return true, ""
		}
	}
	return false, "device not in the service's groups"
}

// refuse answers a stream with a status and closes it.
func (c *Connector) refuse(st tunnel.Stream, reply *tunnel.Reply, svc string, timeout time.Duration) {
	c.metrics.streams.WithLabelValues(svc, reply.Status.String()).Inc()
	c.metrics.totalRefused.Add(1)
	tunnel.Answer(st, reply, timeout)
	st.Close()
}

// relay splices an admitted stream with its service connection, counting
// bytes as they move. HTTP and payload streams are keep-alive connections
// that the gateway never half-closes: EOF from either side ends both.
// CONNECT streams carry a device's own TCP connection: half-close travels
// on. Payload and CONNECT bytes leaving the LAN are paced by the relay
// budget; management requests never are.
func (c *Connector) relay(st tunnel.Stream, conn net.Conn, svc *service, kind tunnel.Kind, to Timeouts, log *zap.Logger) {
	c.metrics.streams.WithLabelValues(svc.name, tunnel.StatusOK.String()).Inc()
	c.metrics.totalStreams.Add(1)
	svc.streams.Add(1)
	svc.active.Add(1)
	defer svc.active.Add(-1)
	upC, downC := c.metrics.bytes.WithLabelValues(svc.name, "up"), c.metrics.bytes.WithLabelValues(svc.name, "down")
	count := func(ctrs ...interface{ Add(float64) }) func(int) {
		return func(n int) {
			for _, ctr := range ctrs {
				ctr.Add(float64(n))
			}
			c.metrics.totalRelayed.Add(int64(n))
		}
	}
	onDown := count(downC)
	if kind == tunnel.KindPayload || kind == tunnel.KindConnect {
		conn = c.budget.Pace(conn)
		onDown = count(downC, c.metrics.paced.WithLabelValues(kind.String()))
	}
	_, _, err := splice.Run(st, conn, splice.Config{Idle: to.StreamIdle, HalfClose: kind == tunnel.KindConnect,
		OnAToB: count(upC), OnBToA: onDown})
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Debug("stream ended", zap.String("service", svc.name), zap.Error(err))
	}
}
