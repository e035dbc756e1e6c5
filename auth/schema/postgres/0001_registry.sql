-- The device registry: tokens, devices, revoked certificates, audit log,
-- snapshot versions. Names and ids sort bytewise (COLLATE "C"), as in SQLite.

CREATE TABLE meta (
	key   text PRIMARY KEY,
	value text NOT NULL
);

CREATE TABLE snapshot_versions (
	tenant  text COLLATE "C" PRIMARY KEY,
	version bigint NOT NULL
);

CREATE TABLE tokens (
	id               text COLLATE "C" PRIMARY KEY,
	tenant           text COLLATE "C" NOT NULL,
	hash             bytea NOT NULL,
	expires_at       timestamptz NOT NULL,
	uses_left        integer NOT NULL CHECK (uses_left >= 0),
	require_approval boolean NOT NULL,
	device_groups    text[] NOT NULL,
	created_at       timestamptz NOT NULL,
	created_by       text NOT NULL
);
CREATE INDEX tokens_by_tenant ON tokens (tenant, created_at);

CREATE TABLE devices (
	tenant         text COLLATE "C" NOT NULL,
	id             text COLLATE "C" NOT NULL,
	name           text NOT NULL,
	status         text NOT NULL CHECK (status IN ('pending', 'active', 'revoked')),
	device_groups  text[] NOT NULL,
	key_spki       bytea NOT NULL,
	token_id       text COLLATE "C" NOT NULL,
	cert_serial    text COLLATE "C" NOT NULL,
	cert_not_after timestamptz,
	created_at     timestamptz NOT NULL,
	updated_at     timestamptz NOT NULL,
	approved_at    timestamptz,
	revoked_at     timestamptz,
	revoke_reason  text NOT NULL,
	PRIMARY KEY (tenant, id)
);
CREATE INDEX devices_by_status ON devices (tenant, status, id);
CREATE INDEX devices_by_group ON devices USING gin (device_groups);

CREATE TABLE revoked_certs (
	tenant     text COLLATE "C" NOT NULL,
	serial     text COLLATE "C" NOT NULL,
	device_id  text COLLATE "C" NOT NULL,
	not_after  timestamptz NOT NULL,
	revoked_at timestamptz NOT NULL,
	reason     text NOT NULL,
	PRIMARY KEY (tenant, serial),
	FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id)
);
CREATE INDEX revoked_certs_by_not_after ON revoked_certs (tenant, not_after);

CREATE TABLE audit_log (
	seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time      timestamptz NOT NULL,
	tenant    text COLLATE "C" NOT NULL,
	device_id text COLLATE "C" NOT NULL,
	token_id  text COLLATE "C" NOT NULL,
	action    text NOT NULL,
	source    text NOT NULL,
	reason    text NOT NULL,
	actor     text NOT NULL
);
CREATE INDEX audit_log_by_time ON audit_log (tenant, time, seq);
