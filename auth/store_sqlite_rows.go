package auth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The SQLite store's tokens, devices, revocations and audit log.

type sqlQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

const sqliteTokenCols = `id, tenant, hash, expires_at, uses_left, require_approval, device_groups, created_at, created_by`

func (s *sqliteStore) CreateToken(ctx context.Context, r TokenRecord) error {
	if err := checkTokenRecord(&r); err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	groups, _ := json.Marshal(r.Groups)
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens (`+sqliteTokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Tenant, r.Hash, r.ExpiresAt.UnixMicro(), r.UsesLeft, r.RequireApproval, string(groups),
			r.CreatedAt.UnixMicro(), r.CreatedBy)
		return err
	})
	if isSQLiteConflict(err) {
		return fmt.Errorf("create token %s: %w", r.ID, ErrTokenExists)
	}
	if err != nil {
		return fmt.Errorf("create token %s: %w", r.ID, err)
	}
	return nil
}

func scanSQLiteToken(row interface{ Scan(...any) error }) (TokenRecord, error) {
	var (
		r                TokenRecord
		expires, created int64
		groups           string
		usesLeft         int
		approval         bool
	)
	err := row.Scan(&r.ID, &r.Tenant, &r.Hash, &expires, &usesLeft, &approval, &groups, &created, &r.CreatedBy)
	if err != nil {
		return TokenRecord{}, err
	}
	r.ExpiresAt, r.CreatedAt = time.UnixMicro(expires).UTC(), time.UnixMicro(created).UTC()
	r.UsesLeft, r.RequireApproval = usesLeft, approval
	if err := json.Unmarshal([]byte(groups), &r.Groups); err != nil {
		return TokenRecord{}, fmt.Errorf("token %s groups: %w", r.ID, err)
	}
	return r, nil
}

func (s *sqliteStore) UseToken(ctx context.Context, p TokenParts, now time.Time) (TokenRecord, error) {
	var rec TokenRecord
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		rec, err = scanSQLiteToken(tx.QueryRowContext(ctx,
			`SELECT `+sqliteTokenCols+` FROM tokens WHERE id = ? AND tenant = ?`, p.ID, p.Tenant))
		if errors.Is(err, sql.ErrNoRows) {
			return ErrTokenUnknown
		}
		if err != nil {
			return err
		}
		if err := checkTokenUse(rec, p, now); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE tokens SET uses_left = uses_left - 1 WHERE id = ?`, p.ID)
		rec.UsesLeft--
		return err
	})
	if err != nil {
		return TokenRecord{}, fmt.Errorf("use token %s: %w", p.ID, err)
	}
	return rec, nil
}

func (s *sqliteStore) ListTokens(ctx context.Context, tenant string) ([]TokenRecord, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqliteTokenCols+` FROM tokens WHERE tenant = ?
		ORDER BY created_at DESC, id`, tenant)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	var out []TokenRecord
	for rows.Next() {
		r, err := scanSQLiteToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

func (s *sqliteStore) DeleteToken(ctx context.Context, tenant, id string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM tokens WHERE tenant = ? AND id = ?`, tenant, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = ErrTokenUnknown
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	return nil
}

const sqliteDeviceCols = `tenant, id, name, status, device_groups, key_spki, token_id, cert_serial,
	cert_not_after, created_at, updated_at, approved_at, revoked_at, revoke_reason`

func sqliteDeviceArgs(d *Device) []any {
	groups, _ := json.Marshal(d.Groups)
	return []any{d.Tenant, d.ID, d.Name, string(d.Status), string(groups), d.KeySPKI[:], d.TokenID, d.CertSerial,
		micros(d.CertNotAfter), micros(d.CreatedAt), micros(d.UpdatedAt), micros(d.ApprovedAt), micros(d.RevokedAt),
		d.RevokeReason}
}

func scanSQLiteDevice(row interface{ Scan(...any) error }) (Device, error) {
	var (
		d                                     Device
		status, groups                        string
		key                                   []byte
		notAfter, created, updated, appr, rev sql.NullInt64
	)
	err := row.Scan(&d.Tenant, &d.ID, &d.Name, &status, &groups, &key, &d.TokenID, &d.CertSerial,
		&notAfter, &created, &updated, &appr, &rev, &d.RevokeReason)
	if err != nil {
		return Device{}, err
	}
	d.Status = DeviceStatus(status)
	if len(key) != len(d.KeySPKI) {
		return Device{}, fmt.Errorf("device %s: key pin of %d bytes", d.ID, len(key))
	}
	copy(d.KeySPKI[:], key)
	d.CertNotAfter, d.CreatedAt, d.UpdatedAt = fromMicros(notAfter), fromMicros(created), fromMicros(updated)
	d.ApprovedAt, d.RevokedAt = fromMicros(appr), fromMicros(rev)
	if err := json.Unmarshal([]byte(groups), &d.Groups); err != nil {
		return Device{}, fmt.Errorf("device %s groups: %w", d.ID, err)
	}
	return d, nil
}

func (s *sqliteStore) CreateDevice(ctx context.Context, d Device) error {
	if err := checkDevice(&d); err != nil {
		return fmt.Errorf("create device: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO devices (`+sqliteDeviceCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, sqliteDeviceArgs(&d)...)
		return err
	})
	if isSQLiteConflict(err) {
		return fmt.Errorf("create device %s: %w", d.ID, ErrDeviceExists)
	}
	if err != nil {
		return fmt.Errorf("create device %s: %w", d.ID, err)
	}
	s.hub.publish(Change{Tenant: d.Tenant, Kind: ChangeDevice})
	return nil
}

func getSQLiteDevice(ctx context.Context, q sqlQuerier, tenant, id string) (Device, error) {
	d, err := scanSQLiteDevice(q.QueryRowContext(ctx,
		`SELECT `+sqliteDeviceCols+` FROM devices WHERE tenant = ? AND id = ?`, tenant, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Device{}, ErrDeviceNotFound
	}
	return d, err
}

func (s *sqliteStore) GetDevice(ctx context.Context, tenant, id string) (Device, error) {
	d, err := getSQLiteDevice(ctx, s.db, tenant, id)
	if err != nil {
		return Device{}, fmt.Errorf("get device %s: %w", id, err)
	}
	return d, nil
}

func (s *sqliteStore) ListDevices(ctx context.Context, tenant string, f DeviceFilter) ([]Device, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = -1 // no limit
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+sqliteDeviceCols+` FROM devices
		WHERE tenant = ?1 AND (?2 = '' OR status = ?2)
		AND (?3 = '' OR EXISTS (SELECT 1 FROM json_each(devices.device_groups) WHERE value = ?3))
		AND id > ?4 ORDER BY id LIMIT ?5`, tenant, string(f.Status), f.Group, f.AfterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		d, err := scanSQLiteDevice(rows)
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	return out, nil
}

func (s *sqliteStore) UpdateDevice(ctx context.Context, tenant, id string, f func(*Device) error) (Device, error) {
	var d Device
	err := s.write(ctx, func(tx *sql.Tx) error {
		old, err := getSQLiteDevice(ctx, tx, tenant, id)
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
		args := sqliteDeviceArgs(&d)
		_, err = tx.ExecContext(ctx, `UPDATE devices SET name = ?3, status = ?4, device_groups = ?5, key_spki = ?6,
			token_id = ?7, cert_serial = ?8, cert_not_after = ?9, created_at = ?10, updated_at = ?11,
			approved_at = ?12, revoked_at = ?13, revoke_reason = ?14 WHERE tenant = ?1 AND id = ?2`, args...)
		if err != nil {
			return fmt.Errorf("update device %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return Device{}, err
	}
	s.hub.publish(Change{Tenant: tenant, Kind: ChangeDevice})
	return d, nil
}

func (s *sqliteStore) Revoke(ctx context.Context, tenant, id, reason string, certs []RevokedCert, now time.Time) error {
	if err := checkRevoke(tenant, id, certs, now); err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	at := dbTime(now).UnixMicro()
	err := s.write(ctx, func(tx *sql.Tx) error {
		d, err := getSQLiteDevice(ctx, tx, tenant, id)
		if err != nil {
			return err
		}
		if d.Status != DeviceRevoked {
			_, err := tx.ExecContext(ctx, `UPDATE devices SET status = 'revoked', revoked_at = ?, revoke_reason = ?,
				updated_at = ? WHERE tenant = ? AND id = ?`, at, reason, at, tenant, id)
			if err != nil {
				return err
			}
		}
		for _, c := range certs {
			_, err := tx.ExecContext(ctx, `INSERT INTO revoked_certs (tenant, serial, device_id, not_after, revoked_at, reason)
				VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, serial) DO NOTHING`,
				tenant, c.Serial, id, dbTime(c.NotAfter).UnixMicro(), at, reason)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke device %s: %w", id, err)
	}
	s.hub.publish(Change{Tenant: tenant, Kind: ChangeRevocation})
	return nil
}

func (s *sqliteStore) Revocations(ctx context.Context, tenant string, now time.Time, grace time.Duration) ([]RevokedCert, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT serial, device_id, not_after, revoked_at, reason FROM revoked_certs
		WHERE tenant = ? AND not_after >= ? ORDER BY serial`, tenant, revocationCutoff(now, grace).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	defer rows.Close()
	var out []RevokedCert
	for rows.Next() {
		var (
			c         RevokedCert
			notAfter  int64
			revokedAt int64
		)
		if err := rows.Scan(&c.Serial, &c.DeviceID, &notAfter, &revokedAt, &c.Reason); err != nil {
			return nil, fmt.Errorf("read revocations: %w", err)
		}
		c.NotAfter, c.RevokedAt = time.UnixMicro(notAfter).UTC(), time.UnixMicro(revokedAt).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read revocations: %w", err)
	}
	return out, nil
}

func (s *sqliteStore) Audit(ctx context.Context, e AuditEvent) error {
	if err := checkAudit(&e); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO audit_log (time, tenant, device_id, token_id, action, source, reason, actor)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, e.Time.UnixMicro(), e.Tenant, e.DeviceID, e.TokenID, string(e.Action),
			e.Source, e.Reason, e.Actor)
		return err
	})
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

func (s *sqliteStore) AuditLog(ctx context.Context, tenant string, since time.Time, limit int) ([]AuditEvent, error) {
	if err := ValidTenant(tenant); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT time, tenant, device_id, token_id, action, source, reason, actor
		FROM audit_log WHERE tenant = ? AND time >= ? ORDER BY time DESC, seq DESC LIMIT ?`,
		tenant, since.UnixMicro(), limit)
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEvent
	for rows.Next() {
		var (
			e      AuditEvent
			at     int64
			action string
		)
		if err := rows.Scan(&at, &e.Tenant, &e.DeviceID, &e.TokenID, &action, &e.Source, &e.Reason, &e.Actor); err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		e.Time, e.Action = time.UnixMicro(at).UTC(), AuditAction(action)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}
