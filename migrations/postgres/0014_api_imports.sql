-- Imports driven through the JSON API (issue 13). An import created by the API waits in
-- stage `pending` with no file until its file is PUT to the signed upload URL.
-- (upload_mode, sync or async, is in the table since 0005.)
-- auto_start: start by itself once validated (an API import not created for review);
-- created_by_key / updated_by_key: the API key that created it or last started, paused,
-- resumed or cancelled it.
ALTER TABLE imports ADD COLUMN auto_start BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE imports ADD COLUMN created_by_key BIGINT;
ALTER TABLE imports ADD COLUMN updated_by_key BIGINT;

-- Idempotency-Key of API POSTs: the first answer, replayed for 24 hours to the same key
-- sending the same key and body; `status` 0 while the first request is still running.
CREATE TABLE api_idempotency (
    api_key_id BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (api_key_id, idempotency_key)
);
CREATE INDEX api_idempotency_created ON api_idempotency (created_at);
