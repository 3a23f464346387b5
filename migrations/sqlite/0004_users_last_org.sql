-- The org a user last switched to: sign-in returns them there (not to whichever org an
-- owner elsewhere happened to name alphabetically first).
ALTER TABLE users ADD COLUMN last_org_id INTEGER REFERENCES organizations (id) ON DELETE SET NULL;
