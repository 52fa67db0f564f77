DROP INDEX IF EXISTS ingest_batch_open;
UPDATE ingest_batch SET status = 'failed' WHERE status = 'broken';
ALTER TABLE ingest_batch DROP CONSTRAINT ingest_batch_status_check;
ALTER TABLE ingest_batch ADD CONSTRAINT ingest_batch_status_check
    CHECK (status IN ('loading', 'loaded', 'failed', 'skipped'));
