-- An ingest batch whose file stopped being valid JSON keeps every record
-- before the break: it ends 'broken', not 'failed' (which now means the
-- ingestion itself failed, e.g. the database went away).
ALTER TABLE ingest_batch DROP CONSTRAINT ingest_batch_status_check;
ALTER TABLE ingest_batch ADD CONSTRAINT ingest_batch_status_check
    CHECK (status IN ('loading', 'loaded', 'broken', 'failed', 'skipped'));
-- Which file of a batch's content is being resumed or skipped: by checksum.
CREATE INDEX ingest_batch_open ON ingest_batch (source, checksum) WHERE status = 'loading';
