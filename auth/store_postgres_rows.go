package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// The PostgreSQL store's tokens, devices, revocations and audit log.

const pgTokenCols = `id, tenant, hash, expires_at, uses_left, require_approval, device_groups, created_at, created_by`

func (s *pgStore) CreateToken(ctx context.Context, r TokenRecord) error {
	if err := checkTokenRecord(&r); err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO tokens (`+pgTokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.ID, r.Tenant, r.Hash, r.ExpiresAt, r.UsesLeft, r.RequireApproval, r.Groups, r.CreatedAt, r.CreatedBy)
	if isPgConflict(err) {
		return fmt.Errorf("create token %s: %w", r.ID, ErrTokenExists)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", r.ID, err)
	}
	return nil
}

func scanPgToken(row pgx.Row) (TokenRecord, error) {
	var r TokenRecord
	err := row.Scan(&r.ID, &r.Tenant, &r.Hash, &r.ExpiresAt, &r.UsesLeft, &r.RequireApproval, &r.Groups,
		&r.CreatedAt, &r.CreatedBy)
	r.ExpiresAt, r.CreatedAt = r.ExpiresAt.UTC(), r.CreatedAt.UTC()
	return r, err
}

func (s *pgStore) UseToken(ctx context.Context, p TokenParts, now time.Time) (TokenRecord, error) {
	var rec TokenRecord
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		rec, err = scanPgToken(tx.QueryRow(ctx,
			`SELECT `+pgTokenCols+` FROM tokens WHERE id = $1 AND tenant = $2 FOR UPDATE`, p.ID, p.Tenant))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrTokenUnknown
		}
		if err != nil {
			return err
		}
		if err := checkTokenUse(rec, p, now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE tokens SET uses_left = uses_left - 1 WHERE id = $1`, p.ID)
		rec.UsesLeft--
		return err
	})
	if err != nil {
		return TokenRecord{}, fmt.Errorf("use token %s: %w", p.ID, err)
	}
	return rec, nil
}

func (s *pgStore) ListTokens(ctx context.Context, tenant string) ([]TokenRecord, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+pgTokenCols+` FROM tokens WHERE tenant = $1
		ORDER BY created_at DESC, id`, tenant)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TokenRecord, error) { return scanPgToken(r) })
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func (s *pgStore) DeleteToken(ctx context.Context, tenant, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM tokens WHERE tenant = $1 AND id = $2`, tenant, id)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrTokenUnknown
	}
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	return nil
}

const pgDeviceCols = `tenant, id, name, status, device_groups, key_spki, token_id, cert_serial,
	cert_not_after, created_at, updated_at, approved_at, revoked_at, revoke_reason`

// pgTime passes the zero time as NULL.
func pgTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromPgTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func pgDeviceArgs(d *Device) []any {
	return []any{d.Tenant, d.ID, d.Name, string(d.Status), d.Groups, d.KeySPKI[:], d.TokenID, d.CertSerial,
		pgTime(d.CertNotAfter), d.CreatedAt, d.UpdatedAt, pgTime(d.ApprovedAt), pgTime(d.RevokedAt), d.RevokeReason}
}

func scanPgDevice(row pgx.Row) (Device, error) {
	var (
		d                   Device
		status              string
		key                 []byte
		notAfter, appr, rev *time.Time
	)
	err := row.Scan(&d.Tenant, &d.ID, &d.Name, &status, &d.Groups, &key, &d.TokenID, &d.CertSerial,
		&notAfter, &d.CreatedAt, &d.UpdatedAt, &appr, &rev, &d.RevokeReason)
	if err != nil {
		return Device{}, err
	}
	if len(key) != len(d.KeySPKI) {
		return Device{}, fmt.Errorf("device %s: key pin of %d bytes", d.ID, len(key))
	}
	copy(d.KeySPKI[:], key)
	d.Status = DeviceStatus(status)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	d.CertNotAfter, d.ApprovedAt, d.RevokedAt = fromPgTime(notAfter), fromPgTime(appr), fromPgTime(rev)
	return d, nil
}

func (s *pgStore) CreateDevice(ctx context.Context, d Device) error {
	if err := checkDevice(&d); err != nil {
		return fmt.Errorf("create device: %w", err)
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO devices (`+pgDeviceCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`, pgDeviceArgs(&d)...)
		if err != nil {
			return err
		}
		return notify(ctx, tx, Change{Tenant: d.Tenant, Kind: ChangeDevice})
	})
	if isPgConflict(err) {
		return fmt.Errorf("create device %s: %w", d.ID, ErrDeviceExists)
	}
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.ID, err)
	}
	return nil
}

// getPgDevice reads a device; lock adds FOR UPDATE.
func getPgDevice(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, tenant, id string, lock bool) (Device, error) {
	query := `SELECT ` + pgDeviceCols + ` FROM devices WHERE tenant = $1 AND id = $2`
	if lock {
		query += ` FOR UPDATE`
	}
	d, err := scanPgDevice(q.QueryRow(ctx, query, tenant, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Device{}, ErrDeviceNotFound
	}
	return d, err
}

func (s *pgStore) GetDevice(ctx context.Context, tenant, id string) (Device, error) {
	d, err := getPgDevice(ctx, s.pool, tenant, id, false)
	if err != nil {
		return Device{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return d, nil
}

func (s *pgStore) ListDevices(ctx context.Context, tenant string, f DeviceFilter) ([]Device, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	var limit *int
	if f.Limit > 0 {
		limit = &f.Limit
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+pgDeviceCols+` FROM devices
		WHERE tenant = $1 AND ($2::text = '' OR status = $2) AND ($3::text = '' OR device_groups @> ARRAY[$3::text])
		AND id > $4 ORDER BY id LIMIT $5`, tenant, string(f.Status), f.Group, f.AfterID, limit)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Device, error) { return scanPgDevice(r) })
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

func (s *pgStore) UpdateDevice(ctx context.Context, tenant, id string, f func(*Device) error) (Device, error) {
	var d Device
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := getPgDevice(ctx, tx, tenant, id, true)
		if err != nil {
			return fmt.Errorf("update device %s: %w", id, err)
		}
		d = old
		d.Groups = slices.Clone(old.Groups)
		if err := f(&d); err != nil {
			return err
		}
		if err := checkDeviceUpdate(old, &d); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE devices SET name = $3, status = $4, device_groups = $5, key_spki = $6,
			token_id = $7, cert_serial = $8, cert_not_after = $9, created_at = $10, updated_at = $11,
			approved_at = $12, revoked_at = $13, revoke_reason = $14 WHERE tenant = $1 AND id = $2`, pgDeviceArgs(&d)...)
		if err != nil {
			return fmt.Errorf("update device %s: %w", id, err)
		}
		return notify(ctx, tx, Change{Tenant: tenant, Kind: ChangeDevice})
	})
	if err != nil {
		return Device{}, err
	}
	return d, nil
}

func (s *pgStore) Revoke(ctx context.Context, tenant, id, reason string, certs []RevokedCert, now time.Time) error {
	if err := checkRevoke(tenant, id, certs, now); err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	at := dbTime(now)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		d, err := getPgDevice(ctx, tx, tenant, id, true)
		if err != nil {
			return err
		}
		if d.Status != DeviceRevoked {
			_, err := tx.Exec(ctx, `UPDATE devices SET status = 'revoked', revoked_at = $1, revoke_reason = $2,
				updated_at = $1 WHERE tenant = $3 AND id = $4`, at, reason, tenant, id)
			if err != nil {
				return err
			}
		}
		for _, c := range certs {
			_, err := tx.Exec(ctx, `INSERT INTO revoked_certs (tenant, serial, device_id, not_after, revoked_at, reason)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant, serial) DO NOTHING`,
				tenant, c.Serial, id, dbTime(c.NotAfter), at, reason)
			if err != nil {
				return err
			}
		}
		return notify(ctx, tx, Change{Tenant: tenant, Kind: ChangeRevocation})
	})
	if err != nil {
		return fmt.Errorf("revoke device %s: %w", id, err)
	}
	return nil
}

func (s *pgStore) Revocations(ctx context.Context, tenant string, now time.Time, grace time.Duration) ([]RevokedCert, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT serial, device_id, not_after, revoked_at, reason FROM revoked_certs
		WHERE tenant = $1 AND not_after >= $2 ORDER BY serial`, tenant, revocationCutoff(now, grace))
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RevokedCert, error) {
		var c RevokedCert
		err := row.Scan(&c.Serial, &c.DeviceID, &c.NotAfter, &c.RevokedAt, &c.Reason)
		c.NotAfter, c.RevokedAt = c.NotAfter.UTC(), c.RevokedAt.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	return out, nil
}

func (s *pgStore) Audit(ctx context.Context, e AuditEvent) error {
	if err := checkAudit(&e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO audit_log (time, tenant, device_id, token_id, action, source, reason, actor)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, e.Time, e.Tenant, e.DeviceID, e.TokenID, string(e.Action),
		e.Source, e.Reason, e.Actor)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (s *pgStore) AuditLog(ctx context.Context, tenant string, since time.Time, limit int) ([]AuditEvent, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, _ := s.pool.Query(ctx, `SELECT time, tenant, device_id, token_id, action, source, reason, actor
		FROM audit_log WHERE tenant = $1 AND time >= $2 ORDER BY time DESC, seq DESC LIMIT $3`,
		tenant, dbTime(since), lim)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (AuditEvent, error) {
		var (
			e      AuditEvent
			action string
		)
		err := row.Scan(&e.Time, &e.Tenant, &e.DeviceID, &e.TokenID, &action, &e.Source, &e.Reason, &e.Actor)
		e.Time, e.Action = e.Time.UTC(), AuditAction(action)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}
