-- The formats and enum value mappings chosen with the column mapping (JSON object: field →
-- {"format": "DD/MM/YYYY", "values": {"Actve": "active"}}), applied when the rows are parsed.
ALTER TABLE imports ADD COLUMN column_options TEXT NOT NULL DEFAULT '';
-- The first rows of the file column by column (distinct values with their rows), read at
-- upload: what the mapping step proposes formats and value mappings from.
ALTER TABLE imports ADD COLUMN column_profile TEXT NOT NULL DEFAULT '';
-- The mapping last confirmed in an org for a set of headers, proposed again for the next
-- file with the same headers.
CREATE TABLE mapping_memory (
    org_id BIGINT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    resource TEXT NOT NULL,
    headers_key TEXT NOT NULL,
    column_mapping TEXT NOT NULL,
    column_options TEXT NOT NULL,
    -- the import it was confirmed for (to say when and which)
    import_id BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, resource, headers_key)
);
