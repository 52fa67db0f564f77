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
ALTER TABLE staged_ga RESET (fillfactor);
ALTER TABLE staged_psi RESET (fillfactor);
ALTER TABLE page_hour RESET (fillfactor);
ALTER TABLE agg_interval RESET (fillfactor);
ALTER TABLE agg_daily RESET (fillfactor);
ALTER TABLE agg_monthly RESET (fillfactor);
ALTER TABLE agg_yearly RESET (fillfactor);
ALTER TABLE agg_site_daily RESET (fillfactor);
