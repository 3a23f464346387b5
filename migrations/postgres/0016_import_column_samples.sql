-- A few values of each column from the file's first rows (JSON array of arrays, in the
-- header's order), shown beside the column at the mapping step.
ALTER TABLE imports ADD COLUMN column_samples TEXT NOT NULL DEFAULT '[]';
