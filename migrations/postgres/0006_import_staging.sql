-- Rows of an import as validation staged them: one row per data row of the file, with the
-- state the phases gave it and, once it parsed, the record it will become. The import
-- phase copies from here into records in chunks; finished and expired imports have their
-- staged rows purged by maintenance. No foreign key: staging is written in bulk and purged
-- explicitly.
CREATE TABLE import_rows (
    import_id BIGINT NOT NULL,
    row_number BIGINT NOT NULL,
    -- pending, malformed, duplicate, conflict, invalid, create, update, unchanged, failed
    state TEXT NOT NULL,
    -- MD5 of the mapped cells as written, for duplicates within the file, as two integers
    digest_hi BIGINT NOT NULL,
    digest_lo BIGINT NOT NULL,
    record_key TEXT NOT NULL,
    -- what parsing found wrong (NULL when every field parsed)
    problem TEXT,
    data TEXT,
    row_hash TEXT,
    search_text TEXT,
    PRIMARY KEY (import_id, row_number)
);

-- The keys an overwrite import's file contains, to find the records it does not (staged
-- only for overwrite: an index on import_rows would slow every import's staging).
CREATE TABLE import_keys (
    import_id BIGINT NOT NULL,
    record_key TEXT NOT NULL,
    PRIMARY KEY (import_id, record_key)
);

-- A staged row's references to other records, its values of unique fields, and the URLs
-- its file and image fields name (target: files or images).
CREATE TABLE import_row_values (
    import_id BIGINT NOT NULL,
    row_number BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ref', 'unique', 'file')),
    field TEXT NOT NULL,
    target TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX import_row_values_row ON import_row_values (import_id, row_number);

-- The original cells of rows that the set-based phases left out, filled in from the file
-- in one ordered pass (issues found while reading the file carry their cells themselves).
CREATE TABLE import_issue_cells (
    import_id BIGINT NOT NULL,
    row_number BIGINT NOT NULL,
    cells TEXT NOT NULL,
    PRIMARY KEY (import_id, row_number)
);

-- Files fetched for file and image fields, by the URL they came from: a URL fetched once
-- is not fetched again for the same org.
CREATE TABLE fetched_files (
    org_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    source_url TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    md5 TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, source_url)
);

-- When a finished import's staged rows were purged.
ALTER TABLE imports ADD COLUMN staging_purged_at BIGINT;

-- A row hash covers the record's key, so the key index already finds a record identical to
-- a row; a second unique index over random hashes only slowed every insert down.
DROP INDEX records_hash;
