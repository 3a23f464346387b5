-- API keys (issue 13): an org's keys for the JSON API. Only the SHA-256 of a key is kept;
-- `prefix` is its first characters, shown so people can tell their keys apart.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    -- the permission names the key carries, separated by spaces
    permissions TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_by_label TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_by_label TEXT NOT NULL DEFAULT '',
    last_used_at INTEGER,
    last_used_from TEXT NOT NULL DEFAULT ''
);
CREATE INDEX api_keys_org ON api_keys (org_id, created_at);
