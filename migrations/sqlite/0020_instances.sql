-- Several instances on one database (issue 16). On SQLite there is one instance: it counts
-- API rate limits in memory, so only the key's fingerprint is kept here.
-- The fingerprint of the key every instance signs sessions, CSRF tokens and download links
-- with: an instance started with another key refuses to start.
CREATE TABLE instance_secret (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
