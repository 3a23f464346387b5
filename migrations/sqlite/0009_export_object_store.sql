-- Export files kept in an S3-compatible bucket: the object's key (NULL: the file is in
-- the data directory at file_path).
ALTER TABLE export_requests ADD COLUMN object_key TEXT;
