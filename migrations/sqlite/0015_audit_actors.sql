-- The audit log's "Who" filter lists the org's distinct actors: read from this index, not
-- from every event of the org.
CREATE INDEX audit_events_actor ON audit_events (org_id, actor_label);
