-- Import actions (merge, overwrite, delete), the journal that makes an import undoable, and
-- the rollback's own progress.

ALTER TABLE imports ADD COLUMN to_delete INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN deleted_rows INTEGER NOT NULL DEFAULT 0;
-- Set when a rollback is asked for (the first request wins; a second sees it set).
ALTER TABLE imports ADD COLUMN rollback_requested_at INTEGER;
ALTER TABLE imports ADD COLUMN rollback_requested_by INTEGER;
ALTER TABLE imports ADD COLUMN rollback_requested_by_label TEXT NOT NULL DEFAULT '';
-- Whether the rollback also undoes records changed since the import.
ALTER TABLE imports ADD COLUMN rollback_overwrite BOOLEAN NOT NULL DEFAULT FALSE;
-- The last journal entry the rollback has undone (its exactly-once cursor).
ALTER TABLE imports ADD COLUMN rollback_cursor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN rolled_back_rows INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN rollback_skipped INTEGER NOT NULL DEFAULT 0;
ALTER TABLE imports ADD COLUMN rolled_back_at INTEGER;

-- When the journal and original file were purged (past the retention): no rollback after.
ALTER TABLE imports ADD COLUMN journal_purged_at INTEGER;

-- Every change an import made, written in the same transaction as the change: the id of a
-- record it created, or the full before-image of a record it updated or deleted. For
-- created and updated records, the row hash the import left, to tell a record changed
-- since from one still as the import left it.
CREATE TABLE import_journal (
    seq INTEGER PRIMARY KEY,
    import_id INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('created', 'updated', 'deleted')),
    record_id INTEGER NOT NULL,
    record_key TEXT NOT NULL,
    after_hash TEXT,
    before_data TEXT,
    before_hash TEXT,
    before_search TEXT,
    before_import_id INTEGER,
    before_import_row INTEGER,
    before_created_at INTEGER,
    before_updated_at INTEGER
);
CREATE INDEX import_journal_import ON import_journal (import_id, seq);

-- The unique values of journaled records before the import changed them.
CREATE TABLE import_journal_uniques (
    import_id INTEGER NOT NULL,
    record_id INTEGER NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX import_journal_uniques_record ON import_journal_uniques (import_id, record_id);

-- An import's activity in its detail sheet.
CREATE INDEX audit_events_target ON audit_events (org_id, target, at);

-- A delete import reports rows that name no record as skipped (not errors).
CREATE TABLE import_issues_v2 (
    id INTEGER PRIMARY KEY,
    import_id INTEGER NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('error', 'duplicate', 'failed', 'skipped')),
    message TEXT NOT NULL,
    cells TEXT NOT NULL
);
INSERT INTO import_issues_v2 (id, import_id, row_number, kind, message, cells)
    SELECT id, import_id, row_number, kind, message, cells FROM import_issues;
DROP TABLE import_issues;
ALTER TABLE import_issues_v2 RENAME TO import_issues;
CREATE INDEX import_issues_row ON import_issues (import_id, row_number);
