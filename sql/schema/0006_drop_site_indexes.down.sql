CREATE INDEX IF NOT EXISTS agg_interval_site ON agg_interval (site_id, period_start);
CREATE INDEX IF NOT EXISTS agg_daily_site ON agg_daily (site_id, period_start);
CREATE INDEX IF NOT EXISTS agg_monthly_site ON agg_monthly (site_id, period_start);
CREATE INDEX IF NOT EXISTS agg_yearly_site ON agg_yearly (site_id, period_start);
