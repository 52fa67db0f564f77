DROP TABLE IF EXISTS pipeline_delta;
ALTER TABLE agg_interval
    ALTER COLUMN engagement_seconds TYPE double precision,
    ALTER COLUMN mobile_score_sum TYPE double precision,
    ALTER COLUMN desktop_score_sum TYPE double precision;
ALTER TABLE agg_daily
    ALTER COLUMN engagement_seconds TYPE double precision,
    ALTER COLUMN mobile_score_sum TYPE double precision,
    ALTER COLUMN desktop_score_sum TYPE double precision;
ALTER TABLE agg_monthly
    ALTER COLUMN engagement_seconds TYPE double precision,
    ALTER COLUMN mobile_score_sum TYPE double precision,
    ALTER COLUMN desktop_score_sum TYPE double precision;
ALTER TABLE agg_yearly
    ALTER COLUMN engagement_seconds TYPE double precision,
    ALTER COLUMN mobile_score_sum TYPE double precision,
    ALTER COLUMN desktop_score_sum TYPE double precision;
ALTER TABLE agg_site_daily
    ALTER COLUMN engagement_seconds TYPE double precision,
    ALTER COLUMN mobile_score_sum TYPE double precision,
    ALTER COLUMN desktop_score_sum TYPE double precision;
