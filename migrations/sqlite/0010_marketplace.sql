-- Marketplace bundle imports (seed 001): one row per import of a bundle version into an org.
-- rollback_snapshot is a JSON array of exactly the records the import created:
-- [{"entity": "...", "id": 1, "key": "...", "hash": "..."}]; rollback deletes those and no other.
CREATE TABLE cl_marketplace_imports (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    bundle_key TEXT NOT NULL,
    bundle_version TEXT NOT NULL,
    bundle_title TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'rolled_back', 'failed')),
    -- items created, and items skipped because the org already had them
    item_count INTEGER NOT NULL DEFAULT 0,
    skipped_count INTEGER NOT NULL DEFAULT 0,
    rollback_snapshot TEXT NOT NULL DEFAULT '[]',
    reason TEXT NOT NULL DEFAULT '',
    imported_by INTEGER,
    imported_by_label TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    completed_at INTEGER,
    rolled_back_at INTEGER,
    rolled_back_by_label TEXT
);
CREATE INDEX cl_marketplace_imports_org ON cl_marketplace_imports (org_id, imported_at);
-- one import of a bundle version at a time per org (a double submit creates one)
CREATE UNIQUE INDEX cl_marketplace_imports_running
    ON cl_marketplace_imports (org_id, bundle_key, bundle_version) WHERE status = 'in_progress';
