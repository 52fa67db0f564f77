DROP TABLE IF EXISTS ingest_batch_quality;
