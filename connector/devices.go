package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/sekisho/sekisho/auth"
)

// ErrNoRegistry is returned by device operations on a connector without a
// registry.
var ErrNoRegistry = errors.New("this connector has no device registry")

// TokenRequest is what `sekisho token create` asks for.
type TokenRequest struct {
	TTL             time.Duration `json:"ttl"`
	Uses            int           `json:"uses"`
	RequireApproval bool          `json:"require_approval"`
	Groups          []string      `json:"groups,omitempty"`
	CreatedBy       string        `json:"created_by,omitempty"`
}

// CreatedToken is a new token; Token is shown once and stored only hashed.
type CreatedToken struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"`
}

// CreateToken makes an enrollment token of the connector's tenant.
func (c *Connector) CreateToken(ctx context.Context, req TokenRequest) (*CreatedToken, error) {
	if c.store == nil {
		return nil, ErrNoRegistry
	}
	if req.TTL <= 0 || req.Uses <= 0 {
		return nil, errors.New("token: ttl and uses must be positive")
	}
	for _, g := range req.Groups {
		if err := auth.ValidGroup(g); err != nil {
			return nil, err
		}
	}
	tok, err := auth.NewToken(c.cfg.Tenant, nil)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	rec := auth.TokenRecord{ID: tok.ID, Tenant: c.cfg.Tenant, Hash: tok.Hash(), ExpiresAt: now.Add(req.TTL),
		UsesLeft: req.Uses, RequireApproval: req.RequireApproval, Groups: req.Groups, CreatedAt: now, CreatedBy: req.CreatedBy}
	if err := c.store.CreateToken(ctx, rec); err != nil {
		return nil, err
	}
	c.store.Audit(ctx, auth.AuditEvent{Time: now, Tenant: c.cfg.Tenant, TokenID: tok.ID, Action: auth.AuditTokenCreate, Actor: req.CreatedBy})
	c.log.Info("enrollment token created", zap.String("token_id", tok.ID), zap.Int("uses", req.Uses),
		zap.Time("expires_at", rec.ExpiresAt), zap.Bool("require_approval", req.RequireApproval))
	return &CreatedToken{Token: tok.Text, ID: tok.ID, ExpiresAt: rec.ExpiresAt, Uses: req.Uses}, nil
}

// Approve lets a pending device get its certificate at its next poll.
func (c *Connector) Approve(ctx context.Context, id, actor string) (auth.Device, error) {
	if c.store == nil {
		return auth.Device{}, ErrNoRegistry
	}
	now := c.cfg.Now()
	d, err := c.store.UpdateDevice(ctx, c.cfg.Tenant, id, func(d *auth.Device) error {
		if d.Status != auth.DevicePending {
			return fmt.Errorf("device %s is %s, not pending", id, d.Status)
		}
		d.Status, d.ApprovedAt, d.UpdatedAt = auth.DeviceActive, now, now
		return nil
	})
	if err != nil {
		return d, err
	}
	c.store.Audit(ctx, auth.AuditEvent{Time: now, Tenant: c.cfg.Tenant, DeviceID: id, Action: auth.AuditApprove, Actor: actor})
	c.log.Info("device approved", zap.String("device_id", id), zap.String("actor", actor))
	return d, nil
}

// Revoke revokes a device for good: its certificates are refused at every
// gateway and its live connections closed as soon as the new snapshot is
// pushed, which happens before Revoke returns.
func (c *Connector) Revoke(ctx context.Context, id, reason, actor string) (auth.Device, error) {
	if c.store == nil {
		return auth.Device{}, ErrNoRegistry
	}
	d, err := c.store.GetDevice(ctx, c.cfg.Tenant, id)
	if err != nil {
		return d, err
	}
	now := c.cfg.Now()
	var revoked []auth.RevokedCert
	if d.CertSerial != "" {
		revoked = append(revoked, auth.RevokedCert{Serial: d.CertSerial, NotAfter: d.CertNotAfter})
	} else {
		// Never issued: keep it in the pushed list as long as a
		// certificate issued now could live.
		revoked = append(revoked, auth.RevokedCert{Serial: "none-" + id, NotAfter: now.Add(c.current().cfg.Enrollment.AgentLifetime)})
	}
	if err := c.store.Revoke(ctx, c.cfg.Tenant, id, reason, revoked, now); err != nil {
		return d, err
	}
	c.store.Audit(ctx, auth.AuditEvent{Time: now, Tenant: c.cfg.Tenant, DeviceID: id, Action: auth.AuditRevoke, Reason: reason, Actor: actor})
	c.log.Info("device revoked", zap.String("device_id", id), zap.String("reason", reason), zap.String("actor", actor))
	if err := c.refresh(ctx, "revocation"); err != nil {
		return d, fmt.Errorf("revoked, but the snapshot was not pushed: %w", err)
	}
	return c.store.GetDevice(ctx, c.cfg.Tenant, id)
}

// deviceActions are the connector's authenticated admin endpoints.
func (c *Connector) deviceActions() (map[string]func(ctx context.Context, body []byte) (any, error), map[string]func(ctx context.Context, q url.Values) (any, error)) {
	actions := map[string]func(context.Context, []byte) (any, error){
		"tokens": func(ctx context.Context, body []byte) (any, error) {
			var req TokenRequest
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, err
			}
			return c.CreateToken(ctx, req)
		},
		"devices/approve": func(ctx context.Context, body []byte) (any, error) {
			var req struct{ ID, Actor string }
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, err
			}
			return c.Approve(ctx, req.ID, req.Actor)
		},
		"devices/revoke": func(ctx context.Context, body []byte) (any, error) {
			var req struct{ ID, Reason, Actor string }
			if err := json.Unmarshal(body, &req); err != nil {
				return nil, err
			}
			return c.Revoke(ctx, req.ID, req.Reason, req.Actor)
		},
	}
	queries := map[string]func(context.Context, url.Values) (any, error){
		"devices": func(ctx context.Context, q url.Values) (any, error) {
			if c.store == nil {
				return nil, ErrNoRegistry
			}
			if id := q.Get("id"); id != "" {
				return c.store.GetDevice(ctx, c.cfg.Tenant, id)
			}
			limit, _ := strconv.Atoi(q.Get("limit"))
			return c.store.ListDevices(ctx, c.cfg.Tenant, auth.DeviceFilter{Status: auth.DeviceStatus(q.Get("status")),
				Group: q.Get("group"), AfterID: q.Get("after"), Limit: limit})
		},
		"audit": func(ctx context.Context, q url.Values) (any, error) {
			if c.store == nil {
				return nil, ErrNoRegistry
			}
			limit, _ := strconv.Atoi(q.Get("limit"))
			return c.store.AuditLog(ctx, c.cfg.Tenant, time.Time{}, max(limit, 100))
		},
	}
	return actions, queries
}
