-- Several instances on one database (issue 16; on SQLite there is one, but the tables
-- are the same).
-- The fingerprint of the key every instance signs sessions, CSRF tokens and download links
-- with: an instance started with another key refuses to start.
CREATE TABLE instance_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- Each API key's current rate-limit window, counted by every instance.
CREATE TABLE api_rate_windows (
    api_key_id INTEGER PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    started INTEGER NOT NULL,
    requests INTEGER NOT NULL
);
