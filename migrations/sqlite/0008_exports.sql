-- Data exports (seed 002): a request, processed in the background into one file in storage.
CREATE TABLE export_requests (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    export_type TEXT NOT NULL CHECK (export_type IN ('entity_data', 'import_history', 'audit_log')),
    format TEXT NOT NULL CHECK (format IN ('csv', 'xlsx', 'json')),
    -- JSON array of entity names (entity_data only)
    entity_types TEXT NOT NULL DEFAULT '[]',
    -- optional range, epoch seconds, inclusive: records by last change, imports by creation,
    -- audit events by time
    date_from INTEGER,
    date_to INTEGER,
    status TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'expired')),
    reason TEXT NOT NULL DEFAULT '',
    -- where the file goes (set at request time) and what it is called when downloaded
    file_path TEXT NOT NULL,
    file_name TEXT NOT NULL,
    file_size INTEGER,
    row_count INTEGER NOT NULL DEFAULT 0,
    requested_by INTEGER,
    requested_by_label TEXT NOT NULL,
    requested_at INTEGER NOT NULL,
    completed_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX export_requests_org ON export_requests (org_id, requested_at);

-- An export reads an entity's records in id order, a page at a time.
CREATE INDEX records_entity_id ON records (org_id, entity, id);
