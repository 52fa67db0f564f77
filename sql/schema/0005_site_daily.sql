-- The daily roll-up of all pages per site: reports without a page filter read
-- one row per site and day instead of one per page and day, and its
-- histograms are merged (one element per bucket). Filled by the daily stage;
-- backfilled here from agg_daily for data aggregated before it existed.
CREATE TABLE agg_site_daily (LIKE agg_daily INCLUDING DEFAULTS);
ALTER TABLE agg_site_daily DROP COLUMN page_id;
ALTER TABLE agg_site_daily ADD PRIMARY KEY (period_start, site_id);
