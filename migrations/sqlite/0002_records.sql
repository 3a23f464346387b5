-- Records of every entity type, one row each: the normalized field values as JSON, the
-- MD5 of that content for duplicate detection, and a lower-cased text for search.
CREATE TABLE records (
    id INTEGER PRIMARY KEY,
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    entity TEXT NOT NULL,
    record_key TEXT NOT NULL,
    data TEXT NOT NULL,
    row_hash TEXT NOT NULL,
    search_text TEXT NOT NULL,
    import_id INTEGER,
    import_row INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX records_key ON records (org_id, entity, record_key);
CREATE UNIQUE INDEX records_hash ON records (org_id, entity, row_hash);

-- Values of the fields a schema marks unique (other than the key), one row each.
CREATE TABLE record_unique_values (
    org_id INTEGER NOT NULL,
    entity TEXT NOT NULL,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    record_id INTEGER NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    PRIMARY KEY (org_id, entity, field, value)
);
CREATE INDEX record_unique_values_record ON record_unique_values (record_id);
