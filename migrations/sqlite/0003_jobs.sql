-- The job queue: every background job of every instance. A worker claims a job by taking
-- its lease; a lease not renewed in time lets another worker take the job over.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    org_id INTEGER REFERENCES organizations (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'timed_out')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    budget_secs INTEGER NOT NULL,
    run_after INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    started_at INTEGER,
    deadline_at INTEGER,
    finished_at INTEGER,
    last_error TEXT NOT NULL DEFAULT '',
    dedupe_key TEXT UNIQUE,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_claim ON jobs (status, run_after);
CREATE INDEX jobs_lease ON jobs (status, lease_expires_at);
