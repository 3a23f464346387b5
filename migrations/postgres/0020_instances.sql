-- Several instances on one database (issue 16).
-- The fingerprint of the key every instance signs sessions, CSRF tokens and download links
-- with: an instance started with another key refuses to start.
CREATE TABLE instance_secret (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    fingerprint TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Each API key's current rate-limit window, counted by every instance.
CREATE TABLE api_rate_windows (
    api_key_id BIGINT PRIMARY KEY REFERENCES api_keys (id) ON DELETE CASCADE,
    started BIGINT NOT NULL,
    requests BIGINT NOT NULL
);
-- A queued job wakes an idle worker on any instance at once (LISTEN stevedore_jobs)
-- instead of at its next poll.
CREATE FUNCTION stevedore_jobs_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('stevedore_jobs', NEW.kind);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER jobs_notify AFTER INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION stevedore_jobs_notify();
