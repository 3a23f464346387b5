-- Imports (seed 004's model), their phases, and the rows they leave out with the reason.
CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    upload_mode TEXT NOT NULL DEFAULT 'async',
    action TEXT NOT NULL DEFAULT 'merge',
    duplicate_handling TEXT NOT NULL DEFAULT 'ignore_all',
    stage TEXT NOT NULL,
    paused BOOLEAN NOT NULL DEFAULT FALSE,
    reason TEXT NOT NULL DEFAULT '',
    file_name TEXT NOT NULL,
    file_path TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    sheet TEXT,
    headers TEXT NOT NULL DEFAULT '[]',
    column_mapping TEXT NOT NULL DEFAULT '{}',
    chunk_size INTEGER NOT NULL,
    total_rows INTEGER NOT NULL DEFAULT 0,
    valid_rows INTEGER NOT NULL DEFAULT 0,
    invalid_rows INTEGER NOT NULL DEFAULT 0,
    duplicate_rows INTEGER NOT NULL DEFAULT 0,
    to_create INTEGER NOT NULL DEFAULT 0,
    to_update INTEGER NOT NULL DEFAULT 0,
    unchanged_rows INTEGER NOT NULL DEFAULT 0,
    processed_rows INTEGER NOT NULL DEFAULT 0,
    created_rows INTEGER NOT NULL DEFAULT 0,
    updated_rows INTEGER NOT NULL DEFAULT 0,
    failed_rows INTEGER NOT NULL DEFAULT 0,
    next_row INTEGER NOT NULL DEFAULT 0,
    created_by INTEGER,
    created_by_label TEXT NOT NULL,
    updated_by INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX imports_org ON imports (org_id, created_at);

CREATE TABLE import_phases (
    import_id INTEGER NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    phase TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    duration_ms INTEGER,
    rows_in INTEGER NOT NULL DEFAULT 0,
    rows_out INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, phase)
);

CREATE TABLE import_issues (
    id INTEGER PRIMARY KEY,
    import_id INTEGER NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('error', 'duplicate', 'failed')),
    message TEXT NOT NULL,
    cells TEXT NOT NULL
);
CREATE INDEX import_issues_row ON import_issues (import_id, row_number);
