DROP TABLE IF EXISTS pipeline_outbox;
ALTER TABLE pipeline_ledger DROP COLUMN IF EXISTS queued_at;
UPDATE pipeline_ledger SET status = 'pending' WHERE status = 'queued';
ALTER TABLE pipeline_ledger DROP CONSTRAINT pipeline_ledger_status_check;
ALTER TABLE pipeline_ledger ADD CONSTRAINT pipeline_ledger_status_check
    CHECK (status IN ('pending', 'running', 'done', 'failed'));
