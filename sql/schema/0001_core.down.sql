-- Reverses 0001_core.sql. Raw partitions go with their parents.
DROP TABLE IF EXISTS pipeline_ledger, pipeline_dirty;
DROP TABLE IF EXISTS agg_yearly, agg_monthly, agg_daily, agg_interval;
DROP TABLE IF EXISTS page_hour, staged_psi, staged_ga;
DROP FUNCTION IF EXISTS raw_partition_drop(text, bigint);
DROP FUNCTION IF EXISTS raw_partition_attach(text, bigint);
DROP TABLE IF EXISTS raw_psi, raw_ga;
DROP TABLE IF EXISTS ingest_reject, ingest_batch;
DROP TABLE IF EXISTS page, site;
