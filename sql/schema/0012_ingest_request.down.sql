DROP TABLE IF EXISTS ingest_request;
