-- The records an import wrote, in the order it wrote them: how many of them still carry
-- the import's id is how the import page counts the records changed since (instead of
-- reading every journal entry), and a chunk finds the records it just wrote. Imports append
-- to this index in order, so keeping it costs little.
CREATE INDEX records_import ON records (import_id, import_row);

-- An org's imports of one file (by its MD5), for the warning that a file was uploaded before.
CREATE INDEX imports_org_checksum ON imports (org_id, checksum);
