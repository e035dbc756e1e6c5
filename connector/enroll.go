package connector

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
	"github.com/sekisho/sekisho/certs"
	"github.com/sekisho/sekisho/tunnel"
)

// errRefused is the generic refusal an agent sees; the audit log gets the
// precise reason (no oracle for token guessing).
var errRefused = errors.New("refused")

// enrollment is one request being decided, with what the audit log needs.
type enrollment struct {
	req    tunnel.EnrollRequest
	source string
	device string
	token  string
}

// serveEnroll answers an enrollment stream: one request, one answer.
func (c *Connector) serveEnroll(ctx context.Context, st tunnel.Stream, h *tunnel.Header, log *zap.Logger) {
	to := c.current().cfg.Timeouts
	if c.store == nil || c.current().ca == nil {
		c.refuse(st, &tunnel.Reply{Status: tunnel.StatusUnavailable, Message: "enrollment needs a registry and a CA"}, tunnel.EnrollService, to.StreamHeader)
		return
	}
	if err := tunnel.Answer(st, &tunnel.Reply{Status: tunnel.StatusOK}, to.StreamHeader); err != nil {
		st.Close()
		return
	}
	defer st.Close()
	st.SetReadDeadline(time.Now().Add(to.StreamHeader))
	typ, body, err := tunnel.ReadMessage(st, tunnel.MaxEnrollLen)
	if err != nil || typ != tunnel.MsgEnrollRequest {
		log.Warn("bad enrollment request", zap.Error(err), zap.Uint8("type", uint8(typ)))
		return
	}
	e := &enrollment{source: h.ClientAddr}
	if err := tunnel.Decode(typ, body, &e.req); err != nil {
		log.Warn("bad enrollment request", zap.Error(err))
		return
	}
	answer := c.decide(ctx, e)
	st.SetWriteDeadline(time.Now().Add(to.StreamHeader))
	if err := tunnel.WriteMessage(st, tunnel.MsgEnrollAnswer, answer); err != nil {
		log.Warn("enrollment answer not sent", zap.Error(err))
	}
}

// decide runs one enrollment operation and audits it.
func (c *Connector) decide(ctx context.Context, e *enrollment) *tunnel.EnrollAnswer {
	var ans *tunnel.EnrollAnswer
	var err error
	switch e.req.Op {
	case tunnel.OpEnroll:
		ans, err = c.enroll(ctx, e)
	case tunnel.OpPoll:
		ans, err = c.poll(ctx, e)
	case tunnel.OpRenew:
		ans, err = c.renew(ctx, e)
	default:
		err = fmt.Errorf("unknown operation %q", e.req.Op)
	}
	if err != nil {
		c.audit(ctx, e, auth.AuditRefuse, err.Error())
		c.log.Info("enrollment refused", zap.String("op", e.req.Op), zap.String("device_id", e.device),
			zap.String("token_id", e.token), zap.String("source", e.source), zap.String("reason", err.Error()))
		return &tunnel.EnrollAnswer{HTTPStatus: http.StatusForbidden, Body: tunnel.EnrollBody{Status: "refused"}}
	}
	return ans
}

// enroll spends a token use, records the device and issues (or leaves it
// pending approval).
func (c *Connector) enroll(ctx context.Context, e *enrollment) (*tunnel.EnrollAnswer, error) {
	parts, err := auth.ParseToken(e.req.Token)
	if err != nil {
		return nil, err
	}
	e.token = parts.ID
	if parts.Tenant != c.cfg.Tenant {
		return nil, fmt.Errorf("token of tenant %q", parts.Tenant)
	}
	csr, pin, err := parseCSR(e.req.CSR)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	tok, err := c.store.UseToken(ctx, parts, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", auth.TokenReason(err), err)
	}
	d := auth.Device{Tenant: c.cfg.Tenant, ID: newDeviceID(), Name: e.req.Hostname, Status: auth.DeviceActive,
		Groups: tok.Groups, KeySPKI: pin, TokenID: tok.ID, CreatedAt: now, UpdatedAt: now, ApprovedAt: now}
	if tok.RequireApproval {
		d.Status, d.ApprovedAt = auth.DevicePending, time.Time{}
	}
	e.device = d.ID
	if err := c.store.CreateDevice(ctx, d); err != nil {
		return nil, fmt.Errorf("record device: %w", err)
	}
	if d.Status == auth.DevicePending {
		c.audit(ctx, e, auth.AuditEnroll, "pending approval")
		return c.pending(d), nil
	}
	c.audit(ctx, e, auth.AuditEnroll, "")
	return c.issue(ctx, d.ID, csr, now)
}

// poll answers a device waiting for approval, proving it holds the key it
// enrolled with.
func (c *Connector) poll(ctx context.Context, e *enrollment) (*tunnel.EnrollAnswer, error) {
	e.device = e.req.DeviceID
	csr, pin, err := parseCSR(e.req.CSR)
	if err != nil {
		return nil, err
	}
	d, err := c.store.GetDevice(ctx, c.cfg.Tenant, e.req.DeviceID)
	if err != nil {
		return nil, err
	}
	switch {
	case d.KeySPKI != pin:
		return nil, errors.New("poll with another key than the enrollment's")
	case d.Status == auth.DevicePending:
		return c.pending(d), nil
	case d.Status != auth.DeviceActive:
		return nil, fmt.Errorf("device is %s", d.Status)
	case d.CertSerial != "":
		return nil, errors.New("poll of a device that has a certificate (renew instead)")
	}
	return c.issue(ctx, d.ID, csr, c.cfg.Now())
}

// renew issues a new certificate to a device holding its current, or
// recently expired, certificate and the same key. The registry decides:
// a revoked device cannot renew.
func (c *Connector) renew(ctx context.Context, e *enrollment) (*tunnel.EnrollAnswer, error) {
	csr, pin, err := parseCSR(e.req.CSR)
	if err != nil {
		return nil, err
	}
	leaf, err := c.checkPresented(e.req.CertChain)
	if err != nil {
		return nil, err
	}
	p, err := auth.PrincipalOf(leaf)
	if err != nil {
		return nil, err
	}
	e.device = p.DeviceID
	if auth.PinOfCert(leaf) != pin {
		return nil, errors.New("CSR key differs from the certificate's")
	}
	d, err := c.store.GetDevice(ctx, c.cfg.Tenant, p.DeviceID)
	if err != nil {
		return nil, err
	}
	if d.Status != auth.DeviceActive {
		return nil, fmt.Errorf("device is %s", d.Status)
	}
	if d.KeySPKI != pin {
		return nil, errors.New("key differs from the registry's")
	}
	ans, err := c.issue(ctx, d.ID, csr, c.cfg.Now())
	if err == nil {
		c.audit(ctx, e, auth.AuditRenew, "")
	}
	return ans, err
}

// checkPresented verifies a renewing agent's certificate chain against the
// tenant's bundle, ignoring expiry, then checks the grace period.
func (c *Connector) checkPresented(chainDER [][]byte) (*x509.Certificate, error) {
	if len(chainDER) == 0 {
		return nil, errors.New("no certificate presented")
	}
	chain := make([]*x509.Certificate, 0, len(chainDER))
	for _, der := range chainDER {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("presented certificate: %w", err)
		}
		chain = append(chain, cert)
	}
	leaf, now := chain[0], c.cfg.Now()
	grace := c.current().cfg.Enrollment.RenewGrace
	if now.After(leaf.NotAfter.Add(grace)) {
		return nil, fmt.Errorf("certificate expired %s ago, past the renewal grace of %s", now.Sub(leaf.NotAfter).Round(time.Second), grace)
	}
	roots := x509.NewCertPool()
	for _, ca := range c.current().bundle {
		roots.AddCert(ca)
	}
	// Verify as of a moment the certificate was valid: expiry is the grace
	// period's business, checked above.
	at := now
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter.Add(-time.Second)
	}
	if _, err := auth.VerifyAgent(chain, c.cfg.Tenant, roots, at); err != nil {
		return nil, err
	}
	return leaf, nil
}

// issue signs a certificate for the device's key and records it.
func (c *Connector) issue(ctx context.Context, id string, csr *x509.CertificateRequest, now time.Time) (*tunnel.EnrollAnswer, error) {
	cfg := c.current().cfg.Enrollment
	leaf, err := c.current().ca.IssueAgent(certs.AgentRequest{DeviceID: id, PublicKey: csr.PublicKey, Lifetime: cfg.AgentLifetime, Now: now})
	if err != nil {
		return nil, err
	}
	if _, err := c.store.UpdateDevice(ctx, c.cfg.Tenant, id, func(d *auth.Device) error {
		d.CertSerial, d.CertNotAfter, d.UpdatedAt = auth.SerialHex(leaf.SerialNumber), leaf.NotAfter, now
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record certificate: %w", err)
	}
	lifetime := leaf.NotAfter.Sub(now)
	chain := certs.EncodeCert(leaf.Raw)
	return &tunnel.EnrollAnswer{HTTPStatus: http.StatusOK, Body: tunnel.EnrollBody{
		Status: "issued", DeviceID: id, Certificate: string(chain),
		NotAfter: leaf.NotAfter.UTC().Format(time.RFC3339), RenewAfter: now.Add(lifetime * 2 / 3).UTC().Format(time.RFC3339),
		CatalogKeys: c.catalogKeys(),
	}}, nil
}

func (c *Connector) pending(d auth.Device) *tunnel.EnrollAnswer {
	poll := c.current().cfg.Enrollment.PollAfter
	return &tunnel.EnrollAnswer{HTTPStatus: http.StatusAccepted, Body: tunnel.EnrollBody{
		Status: "pending", DeviceID: d.ID, PollAfterSeconds: max(1, int(poll/time.Second))}}
}

// catalogKeys are the tenant's catalog signing keys, given to agents at
// enrollment and renewal (signed payload redirects): every key of the
// config, so that agents accept entries signed by any of them during a
// rollover. An empty list (not nil) tells agents the tenant has none.
func (c *Connector) catalogKeys() []tunnel.CatalogKey {
	keys := []tunnel.CatalogKey{}
	for _, s := range c.current().signers {
		pub := s.Public()
		keys = append(keys, tunnel.CatalogKey{ID: pub.ID, PublicKey: pub.Key})
	}
	return keys
}

func (c *Connector) audit(ctx context.Context, e *enrollment, action auth.AuditAction, reason string) {
	err := c.store.Audit(ctx, auth.AuditEvent{Time: c.cfg.Now(), Tenant: c.cfg.Tenant, DeviceID: e.device,
		TokenID: e.token, Action: action, Source: e.source, Reason: reason, Actor: "connector " + c.cfg.ID})
	if err != nil {
		c.log.Error("audit event lost", zap.String("action", string(action)), zap.Error(err))
	}
	c.log.Info("audit", zap.String("action", string(action)), zap.String("device_id", e.device),
		zap.String("token_id", e.token), zap.String("source", e.source), zap.String("reason", reason))
}

// parseCSR checks a PEM CSR's signature and key (ECDSA P-256 or Ed25519)
// and returns it with its key's pin. Names in it are ignored.
func parseCSR(p string) (*x509.CertificateRequest, auth.Pin, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, auth.Pin{}, errors.New("no PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, auth.Pin{}, fmt.Errorf("certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, auth.Pin{}, fmt.Errorf("certificate request signature: %w", err)
	}
	if len(csr.URIs)+len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 {
		return nil, auth.Pin{}, errors.New("certificate request names itself; the connector assigns device names")
	}
	if !acceptableKey(csr.PublicKey) {
		return nil, auth.Pin{}, fmt.Errorf("key type %T not accepted (ECDSA P-256 or Ed25519)", csr.PublicKey)
	}
	pin, err := auth.PinOf(csr.PublicKey)
	return csr, pin, err
}

func acceptableKey(k crypto.PublicKey) bool {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return true
	}
	return false
}

// newDeviceID assigns a device id; never taken from the request.
func newDeviceID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "d-" + hex.EncodeToString(b)
}
