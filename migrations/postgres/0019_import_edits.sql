-- Cells of rows left out, fixed on the import's page (issue 17): every edit kept, the file
-- itself never changed. The latest edit of a cell is what validation and the import read.
CREATE TABLE import_edits (
    id BIGSERIAL PRIMARY KEY,
    import_id BIGINT NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number BIGINT NOT NULL,
    -- the file's column, by its header
    column_name TEXT NOT NULL,
    -- the field that column fills when the edit was made (for the activity)
    field TEXT NOT NULL,
    old_value TEXT NOT NULL,
    new_value TEXT NOT NULL,
    user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    by_label TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX import_edits_row ON import_edits (import_id, row_number);
-- The last edit the latest validation read (0: none): edits after it wait for the next one.
ALTER TABLE imports ADD COLUMN edits_validated BIGINT NOT NULL DEFAULT 0;
-- The grid pages through an import's rows left out with errors, by row.
CREATE INDEX import_issues_kind_row ON import_issues (import_id, kind, row_number);
-- Rows left out that a person chose not to fix: they stay left out and leave the grid.
CREATE TABLE import_skips (
    import_id BIGINT NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number BIGINT NOT NULL,
    user_id BIGINT REFERENCES users (id) ON DELETE SET NULL,
    by_label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (import_id, row_number)
);
