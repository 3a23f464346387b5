-- Import History reads an org's imports newest first, whole or by status or by entity type,
-- a page at a time from a cursor (created_at, id): one index per way of reading, each in the
-- order the page wants, so a page and its count read only the index.
DROP INDEX imports_org;
CREATE INDEX imports_org_recent ON imports (org_id, created_at DESC, id DESC);
CREATE INDEX imports_org_stage ON imports (org_id, stage, created_at DESC, id DESC);
CREATE INDEX imports_org_resource ON imports (org_id, resource, created_at DESC, id DESC);
CREATE INDEX imports_org_resource_stage ON imports (org_id, resource, stage, created_at DESC, id DESC);

-- How many imports an org has per entity type and stage, kept by a trigger, so Import History's
-- counts read a handful of rows instead of counting the org's imports on every request.
CREATE TABLE import_counts (
    org_id BIGINT NOT NULL,
    resource TEXT NOT NULL,
    stage TEXT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (org_id, resource, stage)
);
INSERT INTO import_counts (org_id, resource, stage, n)
SELECT org_id, resource, stage, COUNT(*) FROM imports GROUP BY org_id, resource, stage;

CREATE FUNCTION imports_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.org_id = NEW.org_id AND OLD.resource = NEW.resource AND OLD.stage = NEW.stage THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE import_counts SET n = n - 1
        WHERE org_id = OLD.org_id AND resource = OLD.resource AND stage = OLD.stage;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO import_counts (org_id, resource, stage, n) VALUES (NEW.org_id, NEW.resource, NEW.stage, 1)
        ON CONFLICT (org_id, resource, stage) DO UPDATE SET n = import_counts.n + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER imports_counted AFTER INSERT OR DELETE OR UPDATE OF org_id, resource, stage ON imports
FOR EACH ROW EXECUTE FUNCTION imports_count();
