package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/tunnel"
)

// target is one gateway the connector keeps sessions to, with one loop
// per session slot.
type target struct {
	addr     string
	quicAddr string
	tls      *tls.Config
	quic     quicState
	slots    []context.CancelFunc
	wg       sync.WaitGroup

	up        atomic.Int64 // sessions up, snapshot accepted
	upSince   atomic.Int64 // unix nanos since at least one session is up; 0: none
	transport atomic.Pointer[string]
	lastErr   atomic.Pointer[string]
}

// targetKey tells gateway entries apart: a changed CA or server name is a
// new target.
func targetKey(g GatewayConfig) string {
	return fmt.Sprintf("%s|%s|%s|%s|%p", g.Address, g.QUICAddress, g.ServerName, g.CAFile, g.RootCAs)
}

func (c *Connector) gatewayTLS(g GatewayConfig) (*tls.Config, error) {
	conf := certs.ClientConfig(nil)
	conf.Certificates = []tls.Certificate{c.cert}
	conf.ServerName = g.ServerName
	if conf.ServerName == "" {
		host, _, _ := net.SplitHostPort(g.Address)
		conf.ServerName = host
	}
	conf.RootCAs = g.RootCAs
	if conf.RootCAs == nil && g.CAFile != "" {
		cas, err := certs.LoadCerts(g.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		for _, ca := range cas {
			conf.RootCAs.AddCert(ca)
		}
	}
	return conf, nil
}

// reconcile makes the running targets and their slots match cfg: new
// gateways start, removed ones stop, slot counts grow or shrink. Sessions
// of targets that stay are not touched.
func (c *Connector) reconcile(cfg Config) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runCtx == nil || c.runCtx.Err() != nil {
		return
	}
	want := map[string]GatewayConfig{}
	for _, g := range cfg.Gateways {
		want[targetKey(g)] = g
	}
	for key, t := range c.targets {
		if _, ok := want[key]; !ok {
			c.log.Info("gateway removed", zap.String("gateway", t.addr))
			t.stop()
			delete(c.targets, key)
		}
	}
	for key, g := range want {
		t := c.targets[key]
		if t == nil {
			conf, err := c.gatewayTLS(g)
			if err != nil { // checked when the state was built; files may have changed since
				c.log.Error("gateway not started", zap.String("gateway", g.Address), zap.Error(err))
				continue
			}
			t = &target{addr: g.Address, quicAddr: quicAddress(g), tls: conf}
			c.targets[key] = t
		}
		c.resize(t, cfg.SessionsPerGateway)
	}
}

// resize starts or stops slot loops so that t has n of them.
func (c *Connector) resize(t *target, n int) {
	for len(t.slots) < n {
		ctx, cancel := context.WithCancel(c.runCtx)
		slot := len(t.slots)
		t.slots = append(t.slots, cancel)
		t.wg.Add(1)
		c.loops.Go(func() {
			defer t.wg.Done()
			c.keepSession(ctx, t, slot)
		})
	}
	for len(t.slots) > n {
		last := len(t.slots) - 1
		t.slots[last]()
		t.slots = t.slots[:last]
	}
}

// stop ends every slot of t.
func (t *target) stop() {
	for _, cancel := range t.slots {
		cancel()
	}
	t.slots = nil
}

// keepSession dials one session slot to a gateway and redials it when it
// ends, with jittered exponential backoff.
//
// A session handed over (auto mode moving from TCP back to QUIC) comes in
// as next: the slot goes on with it without dialing.
func (c *Connector) keepSession(ctx context.Context, t *target, slot int) {
	log := c.log.With(zap.String("gateway", t.addr), zap.Int("slot", slot))
	attempt := 0
	var next tunnel.Session
	for ctx.Err() == nil {
		if attempt > 0 {
			c.metrics.reconnects.WithLabelValues(t.addr).Inc()
		}
		sess, err := next, error(nil)
		if sess == nil {
			sess, err = c.dial(ctx, t)
		}
		next = nil
		established := false
		if err == nil {
			established, next, err = c.runSession(ctx, t, sess, log)
		}
		if ctx.Err() != nil {
			return
		}
		if next != nil {
			log.Info("moving to a new session", zap.String("transport", next.Transport()))
			attempt = 0
			continue
		}
		if err != nil {
			msg := err.Error()
			t.lastErr.Store(&msg)
		}
		if established {
			attempt = 0 // it worked before: come back quickly
		}
		bc := c.current().cfg.Backoff
		delay := tunnel.Backoff{Min: bc.Min, Max: bc.Max, Rand: c.cfg.Rand}.Delay(attempt)
		attempt++
		log.Warn("gateway session ended, redialing", zap.Error(err), zap.Duration("retry_in", delay))
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return
		}
	}
}

// sessionUp counts a session of t as serving, until the returned func.
func (t *target) sessionUp(transport string, now time.Time) (down func()) {
	t.transport.Store(&transport)
	if t.up.Add(1) == 1 {
		t.upSince.Store(now.UnixNano())
	}
	return func() {
		if t.up.Add(-1) == 0 {
			t.upSince.Store(0)
		}
	}
}
