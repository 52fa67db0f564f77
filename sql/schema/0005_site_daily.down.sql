DROP TABLE IF EXISTS agg_site_daily;
