package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Store is the device registry that the connector owns: enrollment tokens,
// devices, revoked certificates, the audit log and the versions of the
// snapshots pushed to gateways. It is embedded SQLite by default, or
// PostgreSQL when several connectors of a tenant share one registry.
//
// Every method is safe for concurrent use, also by several processes that
// open the same database. Times are kept to the microsecond and come back
// in UTC; the store reads no clock but to floor snapshot versions (see
// NextVersion).
type Store interface {
	// CreateToken stores a new token; ErrTokenExists if its id is taken.
	CreateToken(ctx context.Context, rec TokenRecord) error
	// UseToken spends one use of the token p names, atomically: it fails
	// with ErrTokenUnknown (no such id for p.Tenant), ErrTokenMismatch (the
	// secret is wrong; no use is spent), ErrTokenExpired or ErrTokenUsedUp,
	// checked in that order, and otherwise returns the record with this
	// use spent (UsesLeft is what remains).
	UseToken(ctx context.Context, p TokenParts, now time.Time) (TokenRecord, error)
	// ListTokens returns the tenant's tokens, newest first, spent and
	// expired ones included.
	ListTokens(ctx context.Context, tenant string) ([]TokenRecord, error)
	// DeleteToken removes a token so it cannot be used again;
	// ErrTokenUnknown if there is none.
	DeleteToken(ctx context.Context, tenant, id string) error

	// CreateDevice stores a new device; ErrDeviceExists if its id is taken.
	CreateDevice(ctx context.Context, d Device) error
	// GetDevice returns a device or ErrDeviceNotFound.
	GetDevice(ctx context.Context, tenant, id string) (Device, error)
	// ListDevices returns the tenant's devices that match filter, by id.
	ListDevices(ctx context.Context, tenant string, filter DeviceFilter) ([]Device, error)
	// UpdateDevice reads a device, lets f change it and writes it back, in
	// one transaction that holds the row: concurrent updates of one device
	// apply one after the other. f must not call the store. If f fails,
	// nothing is written and its error is returned as is. f may not change
	// the tenant or id, nor move a device into or out of DeviceRevoked (use
	// Revoke: revocation is final).
	UpdateDevice(ctx context.Context, tenant, id string, f func(*Device) error) (Device, error)

	// Revoke marks a device revoked with reason and records its certs as
	// revoked at now, in one transaction. Revoking a revoked device keeps
	// its first time and reason and adds any certs not yet recorded.
	Revoke(ctx context.Context, tenant, id, reason string, certs []RevokedCert, now time.Time) error
	// Revocations returns the revoked certs to push to gateways, by serial:
	// those whose NotAfter+grace is not before now. A revoked cert leaves
	// the pushed list only once it can neither be used nor renewed; the
	// registry keeps every revocation for audit.
	Revocations(ctx context.Context, tenant string, now time.Time, grace time.Duration) ([]RevokedCert, error)

	// Audit appends an event to the audit log.
	Audit(ctx context.Context, e AuditEvent) error
	// AuditLog returns the newest limit (all if limit <= 0) events of the
	// tenant at or after since, oldest first.
	AuditLog(ctx context.Context, tenant string, since time.Time, limit int) ([]AuditEvent, error)

	// Epoch returns the random id made when the registry was created. A
	// snapshot is named by (epoch, version); a new registry has a new epoch.
	Epoch(ctx context.Context) (string, error)
	// NextVersion returns the tenant's next snapshot version. Versions are
	// unique and increase across every connector and process that shares
	// the registry. Each is also at least the current time in Unix
	// microseconds (the database server's clock for PostgreSQL), so a
	// registry restored from a backup does not hand out old versions again.
	NextVersion(ctx context.Context, tenant string) (uint64, error)

	// Watch reports changes to devices and revocations until ctx ends or the
	// store is closed, then closes the channel. Changes that pile up while
	// the receiver is slow are merged, never dropped: a Change means "read
	// again". With SQLite, only changes made through this Store value are
	// seen; with PostgreSQL, changes made by every process sharing the
	// database are (LISTEN/NOTIFY), and a ChangeResync is sent after the
	// listening connection was lost and restored. Every change committed
	// after Watch returns is reported.
	Watch(ctx context.Context) (<-chan Change, error)

	// Close releases the database and ends every Watch. It is idempotent.
	Close() error
}

// Registry errors. The token errors are precise reasons for the audit log
// (see TokenReason); the enrolling client gets a generic refusal.
var (
	ErrTokenUnknown   = errors.New("enrollment token unknown")
	ErrTokenMismatch  = errors.New("enrollment token secret does not match")
	ErrTokenExpired   = errors.New("enrollment token expired")
	ErrTokenUsedUp    = errors.New("enrollment token used up")
	ErrTokenExists    = errors.New("enrollment token id already taken")
	ErrDeviceNotFound = errors.New("device not found")
	ErrDeviceExists   = errors.New("device id already taken")
	// ErrSchemaTooNew means the database was migrated by a newer sekisho.
	ErrSchemaTooNew = errors.New("registry schema is newer than this sekisho")
	// ErrStoreClosed is returned by Watch after Close.
	ErrStoreClosed = errors.New("registry store closed")
)

// TokenRecord is what the registry keeps of an enrollment token.
type TokenRecord struct {
	ID     string
	Tenant string
	// Hash is TokenParts.Hash of the token; the secret itself is not kept.
	Hash      []byte
	ExpiresAt time.Time
	// UsesLeft is how many more devices may enroll with the token.
	UsesLeft int
	// RequireApproval makes devices enrolled with the token start pending.
	RequireApproval bool
	// Groups are given to every device enrolled with the token.
	Groups    []string
	CreatedAt time.Time
	// CreatedBy names the operator who made the token.
	CreatedBy string
}

// DeviceStatus is where a device is in its life.
type DeviceStatus string

// Device statuses.
const (
	DevicePending DeviceStatus = "pending" // enrolled, waiting for approval
	DeviceActive  DeviceStatus = "active"
	DeviceRevoked DeviceStatus = "revoked" // final
)

// Device is one enrolled PC.
type Device struct {
	Tenant string
	ID     string
	// Name is a label for operators (the PC's host name, say).
	Name   string
	Status DeviceStatus
	Groups []string
	// KeySPKI pins the device's key: renewals must use the same key.
	KeySPKI Pin
	// TokenID names the token the device enrolled with.
	TokenID string
	// CertSerial (see SerialHex) and CertNotAfter describe the newest
	// certificate issued to the device; empty and zero before the first.
	CertSerial   string
	CertNotAfter time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	ApprovedAt   time.Time // zero until approved
	RevokedAt    time.Time // zero unless revoked
	RevokeReason string
}

// DeviceFilter selects devices; its zero value selects all.
type DeviceFilter struct {
	Status DeviceStatus // "" for any
	Group  string       // "" for any; else devices in this group
	// AfterID and Limit page through the list: devices with ids after
	// AfterID, at most Limit of them (all if Limit <= 0).
	AfterID string
	Limit   int
}

// RevokedCert is one revoked certificate.
type RevokedCert struct {
	// Serial is the serial number as SerialHex writes it.
	Serial   string
	NotAfter time.Time
	// DeviceID, RevokedAt and Reason are filled in by Revoke.
	DeviceID  string
	RevokedAt time.Time
	Reason    string
}

// AuditAction names what an audit event records.
type AuditAction string

// Audit actions.
const (
	AuditTokenCreate AuditAction = "token_create"
	AuditTokenDelete AuditAction = "token_delete"
	AuditEnroll      AuditAction = "enroll"
	AuditApprove     AuditAction = "approve"
	AuditRenew       AuditAction = "renew"
	AuditRevoke      AuditAction = "revoke"
	// AuditRefuse records a refused enrollment or renewal; Reason says why
	// (TokenReason, say), though the client was told nothing.
	AuditRefuse AuditAction = "refuse"
)

// AuditEvent is one line of the audit log.
type AuditEvent struct {
	Time     time.Time
	Tenant   string
	DeviceID string // "" if none (a refused enrollment)
	TokenID  string // "" if none
	Action   AuditAction
	// Source is the client's address, as the gateway saw it.
	Source string
	Reason string
	// Actor is the operator or component that acted ("connector", say).
	Actor string
}

// ChangeKind says what changed.
type ChangeKind string

// Change kinds.
const (
	ChangeDevice     ChangeKind = "device"     // a device was created or updated
	ChangeRevocation ChangeKind = "revocation" // a device and its certs were revoked
	// ChangeResync means that changes may have been missed: read every
	// tenant again. Its Tenant is "".
	ChangeResync ChangeKind = "resync"
)

// Change tells watchers that a tenant's registry state changed.
type Change struct {
	Tenant string
	Kind   ChangeKind
}

// OpenStore opens the registry named by dsn, creating and migrating its
// schema as needed:
//   - "postgres://..." or "postgresql://...": PostgreSQL, through a pgx pool;
//   - "sqlite:PATH" or a plain file PATH: SQLite in that file, created
//     readable by its owner only.
//
// It fails with ErrSchemaTooNew if the database was migrated by a newer
// sekisho. logger may be nil.
func OpenStore(ctx context.Context, dsn string, logger *zap.Logger) (Store, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return openPostgres(ctx, dsn, logger)
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"), logger)
	case dsn == "":
		return nil, errors.New("open registry: empty database name")
	case strings.Contains(dsn, "://"):
		scheme, _, _ := strings.Cut(dsn, "://")
		return nil, fmt.Errorf("open registry: unknown database scheme %q (want postgres://, postgresql:// or sqlite:PATH)", scheme)
	default:
		return openSQLite(ctx, dsn, logger)
	}
}
