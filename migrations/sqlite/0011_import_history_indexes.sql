-- Import History reads an org's imports newest first, whole or by status or by entity type,
-- a page at a time from a cursor (created_at, id): one index per way of reading, each in the
-- order the page wants, so a page and its count read only the index.
DROP INDEX imports_org;
CREATE INDEX imports_org_recent ON imports (org_id, created_at DESC, id DESC);
CREATE INDEX imports_org_stage ON imports (org_id, stage, created_at DESC, id DESC);
CREATE INDEX imports_org_resource ON imports (org_id, resource, created_at DESC, id DESC);
CREATE INDEX imports_org_resource_stage ON imports (org_id, resource, stage, created_at DESC, id DESC);
