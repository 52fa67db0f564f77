-- What a GA4 report says about its own completeness, kept with the batch that
-- ingested it (docs/sources.md, "Quality flags"). Applied by
-- pipeline/migrations/0018_batch_quality.py; 0010_batch_quality.down.sql reverses it.
--
-- One row per response of the file that carries a flag: metadata.dataLossFromOtherRow
-- (GA4 folded rows into "(other)"), metadata.subjectToThresholding (GA4 withheld
-- small counts) or metadata.samplingMetadatas (the report was computed from a
-- sample; kept as sent). first_hour/last_hour are the UTC hours of the response's
-- accepted rows (null when none was accepted): the reports whose range touches
-- them show the flags in their freshness block (reporting/selectors.py).
CREATE TABLE ingest_batch_quality (
    batch_id bigint NOT NULL REFERENCES ingest_batch (id) ON DELETE CASCADE,
    response integer NOT NULL CHECK (response >= 1),  -- 1-based, in the file
    rows bigint NOT NULL DEFAULT 0 CHECK (rows >= 0),  -- rows of the response accepted
    first_hour timestamptz,
    last_hour timestamptz,
    data_loss_from_other_row boolean NOT NULL DEFAULT false,
    subject_to_thresholding boolean NOT NULL DEFAULT false,
    sampling jsonb,
    PRIMARY KEY (batch_id, response),
    CHECK (first_hour <= last_hour)
);
CREATE INDEX ingest_batch_quality_hours ON ingest_batch_quality (first_hour, last_hour);
