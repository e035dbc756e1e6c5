package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
)

// EnrollInfo is what the operator sees of an enrolling PC. It is
// informative only: the connector assigns the device id.
type EnrollInfo struct {
	Hostname string
	// OS defaults to runtime.GOOS.
	OS string
}

// Enrollment is the outcome of an enrollment or a renewal.
type Enrollment struct {
	Tenant   string
	DeviceID string
	// Certificate is the agent's new certificate.
	Certificate *x509.Certificate
	// RenewAfter is when the connector suggests renewing; zero when it
	// did not say.
	RenewAfter  time.Time
	CatalogKeys []CatalogKey
}

func enrollmentOf(id *Identity, a *answer) *Enrollment {
	return &Enrollment{
		Tenant:      id.Principal.Tenant,
		DeviceID:    id.Principal.DeviceID,
		Certificate: id.Leaf(),
		RenewAfter:  a.renewAfter(),
		CatalogKeys: id.CatalogKeys,
	}
}

// Enroll enrolls this PC with a one-time token: it generates a P-256 key
// here (it never leaves the PC), posts a CSR with the token to the first
// reachable gateway, waits for an operator's approval when the tenant
// requires one (polling as the connector says, until ctx ends), checks the
// certificate it gets and stores key, certificate and catalog keys in
// cfg.StateDir, replacing any earlier identity. Nothing is written unless
// a certificate is issued. ErrRefused reports a refusal.
func Enroll(ctx context.Context, cfg Config, token string, info EnrollInfo) (*Enrollment, error) {
	e, err := newEnroller(cfg, token)
	if err != nil {
		return nil, err
	}
	if info.OS == "" {
		info.OS = runtime.GOOS
	}
	key, err := certs.NewKey()
	if err != nil {
		return nil, err
	}
	csr, err := newCSR(key, info.Hostname)
	if err != nil {
		return nil, err
	}
	ans, err := e.run(ctx, &enrollRequest{Token: token, CSR: csr, Hostname: info.Hostname, OS: info.OS})
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	id, err := acceptIssued(ans, key, e.x.clock.now())
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	if err := (store{dir: e.cfg.StateDir}).save(id); err != nil {
		return nil, err
	}
	e.log.Info("enrolled", zap.String("device_id", id.Principal.DeviceID),
		zap.Time("not_after", id.Leaf().NotAfter), zap.String("state_dir", e.cfg.StateDir))
	return enrollmentOf(id, ans), nil
}

// enroller runs one enrollment: the token request, then the polls while
// approval is pending.
type enroller struct {
	x      exchanger
	cfg    Config
	tenant string // from the token
	log    *zap.Logger
}

// newEnroller checks cfg and the token's syntax (a typo is reported
// without asking any gateway).
func newEnroller(cfg Config, token string) (*enroller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tok, err := auth.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("enrollment token: %w", err)
	}
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	return &enroller{x: exchanger{dialer: d, clock: newClock(cfg)}, cfg: cfg, tenant: tok.Tenant,
		log: cfg.Logger.With(zap.String("tenant", tok.Tenant), zap.String("token_id", tok.ID))}, nil
}

// run posts the token request and polls until the certificate is issued.
func (e *enroller) run(ctx context.Context, first *enrollRequest) (*answer, error) {
	ans, err := e.post(ctx, first, false)
	bo := e.x.clock.backoff(e.cfg.RetryMin, e.cfg.RetryMax)
	for err == nil && ans.Status == statusPending {
		if err := auth.ValidDeviceID(ans.DeviceID); err != nil {
			return nil, fmt.Errorf("pending answer: %w", err)
		}
		wait := bo.next()
		if ans.PollAfterSeconds > 0 {
			wait = min(time.Duration(ans.PollAfterSeconds)*time.Second, maxWait)
		}
		e.log.Info("enrollment pending approval", zap.String("device_id", ans.DeviceID), zap.Duration("poll_in", wait))
		if err := e.x.clock.sleep(ctx, wait); err != nil {
			return nil, err
		}
		poll := &enrollRequest{DeviceID: ans.DeviceID, Tenant: e.tenant, CSR: first.CSR, Hostname: first.Hostname, OS: first.OS}
		ans, err = e.post(ctx, poll, true)
	}
	return ans, err
}

// post sends one request to /v1/enroll, again after 429 and 503, and
// after network failures when idempotent (a poll).
func (e *enroller) post(ctx context.Context, req *enrollRequest, idempotent bool) (*answer, error) {
	bo := e.x.clock.backoff(e.cfg.RetryMin, e.cfg.RetryMax)
	for {
		ans, err := e.x.post(ctx, pathEnroll, req)
		if err == nil {
			return ans, nil
		}
		wait, retry := retryDelay(err, bo, idempotent)
		if !retry || ctx.Err() != nil {
			return nil, err
		}
		e.log.Warn("enrollment request failed", zap.Error(err), zap.Duration("retry_in", wait))
		if err := e.x.clock.sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}
