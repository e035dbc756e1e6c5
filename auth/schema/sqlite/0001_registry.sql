-- The device registry: tokens, devices, revoked certificates, audit log,
-- snapshot versions. Times are Unix microseconds (UTC); groups are JSON
-- arrays of strings.

CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TABLE snapshot_versions (
	tenant  TEXT PRIMARY KEY,
	version INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
	id               TEXT PRIMARY KEY,
	tenant           TEXT NOT NULL,
	hash             BLOB NOT NULL,
	expires_at       INTEGER NOT NULL,
	uses_left        INTEGER NOT NULL CHECK (uses_left >= 0),
	require_approval INTEGER NOT NULL,
	device_groups    TEXT NOT NULL,
	created_at       INTEGER NOT NULL,
	created_by       TEXT NOT NULL
) STRICT;
CREATE INDEX tokens_by_tenant ON tokens (tenant, created_at);

CREATE TABLE devices (
	tenant         TEXT NOT NULL,
	id             TEXT NOT NULL,
	name           TEXT NOT NULL,
	status         TEXT NOT NULL CHECK (status IN ('pending', 'active', 'revoked')),
	device_groups  TEXT NOT NULL,
	key_spki       BLOB NOT NULL,
	token_id       TEXT NOT NULL,
	cert_serial    TEXT NOT NULL,
	cert_not_after INTEGER,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	approved_at    INTEGER,
	revoked_at     INTEGER,
	revoke_reason  TEXT NOT NULL,
	PRIMARY KEY (tenant, id)
) STRICT;
CREATE INDEX devices_by_status ON devices (tenant, status, id);

CREATE TABLE revoked_certs (
	tenant     TEXT NOT NULL,
	serial     TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	not_after  INTEGER NOT NULL,
	revoked_at INTEGER NOT NULL,
	reason     TEXT NOT NULL,
	PRIMARY KEY (tenant, serial),
	FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id)
) STRICT;
CREATE INDEX revoked_certs_by_not_after ON revoked_certs (tenant, not_after);

CREATE TABLE audit_log (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	time      INTEGER NOT NULL,
	tenant    TEXT NOT NULL,
	device_id TEXT NOT NULL,
	token_id  TEXT NOT NULL,
	action    TEXT NOT NULL,
	source    TEXT NOT NULL,
	reason    TEXT NOT NULL,
	actor     TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_by_time ON audit_log (tenant, time, seq);
