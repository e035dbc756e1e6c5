package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// Renew renews the certificate now: a CSR signed by the same key is
// posted to /v1/renew over the enrollment protocol, with the current
// certificate, expired or not, as the TLS client certificate (the
// connector decides whether it is within the grace period). The new
// certificate and catalog keys are stored, and new connections present
// the new certificate at once. ErrRefused and *StatusError report
// refusals.
func (a *Agent) Renew(ctx context.Context) (*Enrollment, error) {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()
	cur := a.Identity()
	csr, err := newCSR(cur.Key, cur.Principal.DeviceID)
	if err != nil {
		return nil, err
	}
	x := exchanger{dialer: a.client.dialer, cert: a.client.Certificate, clock: a.clock}
	ans, err := x.post(ctx, pathRenew, &enrollRequest{CSR: csr})
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	id, err := a.acceptRenewal(cur, ans)
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	if err := a.save(id, ans.CatalogKeys != nil); err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	a.id.Store(id)
	a.client.SetCertificate(id.TLSCertificate())
	hint := ans.renewAfter()
	a.hint.Store(&hint)
	a.log.Info("certificate renewed", zap.Time("not_after", id.Leaf().NotAfter))
	return enrollmentOf(id, ans), nil
}

// acceptRenewal checks a renewal's answer: issued, for our key, for the
// same tenant and device. Catalog keys the answer leaves out stay as
// they were.
func (a *Agent) acceptRenewal(cur *Identity, ans *answer) (*Identity, error) {
	if ans.Status != statusIssued {
		return nil, fmt.Errorf("answer %q, want %q", ans.Status, statusIssued)
	}
	id, err := acceptIssued(ans, cur.Key, a.clock.now())
	if err != nil {
		return nil, err
	}
	if id.Principal.Tenant != cur.Principal.Tenant || id.Principal.DeviceID != cur.Principal.DeviceID {
		return nil, fmt.Errorf("new certificate names %s/%s, not %s/%s", id.Principal.Tenant, id.Principal.DeviceID,
			cur.Principal.Tenant, cur.Principal.DeviceID)
	}
	if ans.CatalogKeys == nil {
		id.CatalogKeys = cur.CatalogKeys
	}
	return id, nil
}

// save stores a renewed certificate, and the catalog keys when the answer
// held some. It refuses when the key file no longer holds our key: the PC
// was enrolled again while this agent ran, and the new identity must not
// be overwritten with a certificate for the old key.
func (a *Agent) save(id *Identity, catalogKeys bool) error {
	key, err := a.store.loadKey()
	if err != nil {
		return err
	}
	if !publicKeysEqual(key.Public(), id.Key.Public()) {
		return fmt.Errorf("%s changed while the agent ran (enrolled again?): restart the agent", a.store.path(KeyFile))
	}
	if err := a.store.saveChain(id.Chain); err != nil {
		return err
	}
	if catalogKeys {
		return a.store.saveCatalogKeys(id.CatalogKeys)
	}
	return nil
}

// renewLoop renews the certificate at RenewAt of its lifetime (or
// earlier, when the connector said so), retrying failures with jittered
// backoff, until ctx ends. A certificate already due is renewed at once.
func (a *Agent) renewLoop(ctx context.Context) error {
	for first := true; ; first = false {
		wait := a.nextRenewal().Sub(a.clock.now())
		if !first {
			// A certificate due as soon as it is issued (a clock far
			// off, a tiny lifetime) must not make the loop spin.
			wait = max(wait, a.cfg.RetryMin)
		}
		if a.clock.sleep(ctx, wait) != nil || !a.renewRetrying(ctx) {
			return nil
		}
	}
}

// renewRetrying renews until it succeeds; false when ctx ended first.
func (a *Agent) renewRetrying(ctx context.Context) bool {
	bo := a.clock.backoff(a.cfg.RetryMin, a.cfg.RetryMax)
	for {
		_, err := a.Renew(ctx)
		if err == nil {
			a.lastErr.Store(nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		msg := err.Error()
		a.lastErr.Store(&msg)
		wait, ok := retryDelay(err, bo, true)
		if !ok {
			wait = bo.next() // refused: the operator may yet fix it
		}
		a.logRenewFailure(err, wait)
		if a.clock.sleep(ctx, wait) != nil {
			return false
		}
	}
}

func (a *Agent) logRenewFailure(err error, wait time.Duration) {
	leaf := a.Identity().Leaf()
	fields := []zap.Field{zap.Error(err), zap.Duration("retry_in", wait), zap.Time("not_after", leaf.NotAfter)}
	switch {
	case errors.Is(err, ErrRefused):
		a.log.Error("certificate renewal refused: enroll again if this persists", fields...)
	case !a.clock.now().Before(leaf.NotAfter):
		a.log.Error("certificate expired and renewal failed", fields...)
	default:
		a.log.Warn("certificate renewal failed", fields...)
	}
}

// nextRenewal returns when the current certificate is due: at RenewAt of
// its lifetime, or at the connector's renew_after when that is earlier.
func (a *Agent) nextRenewal() time.Time {
	leaf := a.Identity().Leaf()
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	at := leaf.NotBefore.Add(time.Duration(float64(life) * a.cfg.RenewAt))
	if h := a.hint.Load(); h != nil && h.After(leaf.NotBefore) && h.Before(at) {
		at = *h
	}
	a.next.Store(&at)
	return at
}

// Status is a summary of the agent for logs and status commands.
type Status struct {
	Tenant   string    `json:"tenant"`
	DeviceID string    `json:"device_id"`
	NotAfter time.Time `json:"not_after"`
	// NextRenewal is zero until Run has scheduled one.
	NextRenewal      time.Time `json:"next_renewal"`
	LastRenewalError string    `json:"last_renewal_error,omitempty"`
	// Gateway is the gateway that worked last.
	Gateway     string   `json:"gateway"`
	Listeners   []string `json:"listeners"`
	ActiveConns int      `json:"active_conns"`
}

// Status returns the agent's current state.
func (a *Agent) Status() Status {
	id := a.Identity()
	s := Status{
		Tenant: id.Principal.Tenant, DeviceID: id.Principal.DeviceID, NotAfter: id.Leaf().NotAfter,
		Gateway: a.client.Gateway(), Listeners: a.listenAddrs(), ActiveConns: a.relays.active(),
	}
	if n := a.next.Load(); n != nil {
		s.NextRenewal = *n
	}
	if e := a.lastErr.Load(); e != nil {
		s.LastRenewalError = *e
	}
	return s
}
