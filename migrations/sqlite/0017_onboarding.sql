-- Seed 000's onboarding workflow (issue 14): per org and entity type, the import made for
-- that step (the latest) or that the step was skipped. Kept per org, so the workflow
-- survives sign-out and another owner picks it up where it stands.
CREATE TABLE onboarding_steps (
    org_id INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    entity TEXT NOT NULL,
    import_id INTEGER REFERENCES imports (id) ON DELETE SET NULL,
    skipped INTEGER NOT NULL DEFAULT 0,
    -- the workbook the step's import came from ('' for a file of its own): its steps are
    -- validated and imported together, in step order
    workbook TEXT NOT NULL DEFAULT '',
    -- the step's turn to validate (or import) was taken: set once, so its job is queued once
    validate_queued INTEGER NOT NULL DEFAULT 0,
    import_queued INTEGER NOT NULL DEFAULT 0,
    -- who asked to validate or import the workbook's steps: they start in that person's name
    queued_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    updated_by_label TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (org_id, entity)
);

-- The workflow as a whole: when the org finished it and who (the summary stays on the page);
-- a rollback of every step, asked by whom (NULL: none running), undone newest step first.
CREATE TABLE onboardings (
    org_id INTEGER PRIMARY KEY REFERENCES organizations (id) ON DELETE CASCADE,
    finished_at INTEGER,
    finished_by_label TEXT NOT NULL DEFAULT '',
    rollback_requested_at INTEGER,
    rollback_requested_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    rollback_requested_by_label TEXT NOT NULL DEFAULT '',
    rollback_overwrite INTEGER NOT NULL DEFAULT 0
);
