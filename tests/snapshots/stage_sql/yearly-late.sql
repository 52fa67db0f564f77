-- The SQL the yearly stage executes on its late path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 1: window 2025-01-01..2026-01-01

-- ---- statement 1
WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start
    )
    INSERT INTO _rollup_keys SELECT page_id, period_start FROM keys;

-- ---- statement 2
NOT EXISTS (SELECT FROM pipeline_delta
                   WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to);

-- ---- statement 3
    SELECT array_agg(name ORDER BY ord) FROM catalog_measures();

-- ---- statement 4
    SELECT string_agg(
               CASE WHEN kind = 'hist' THEN format('%s(a.%I)', p_hist, name)
                    ELSE format('sum(a.%I)', name) END, ', ' ORDER BY ord)
    FROM catalog_measures();

-- ---- statement 5
    SELECT array_agg(name ORDER BY ord) FROM catalog_measures();

-- ---- statement 6
format(
        'WITH taken AS ('
        '  DELETE FROM pipeline_delta WHERE stage = $1 AND period_start >= $2 AND period_start < $3'
        '  RETURNING *'
        ') INSERT INTO _deltas (period_start, page_id, site_id, %3$s) '
        'SELECT %1$s, a.page_id, min(a.site_id), %2$s FROM taken a GROUP BY 1, 2',
        p_period, _rollup_aggregates('hist_cat_agg'),
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(_aggregate_columns()) c));

-- ---- statement 7
WITH taken AS (  DELETE FROM pipeline_delta WHERE stage = $1 AND period_start >= $2 AND period_start < $3  RETURNING *) INSERT INTO _deltas (period_start, page_id, site_id, traffic_hours, users, sessions, views, bounces, engagement_seconds, mobile_samples, mobile_score_sum, mobile_lcp_ms_n, mobile_lcp_ms_good, mobile_lcp_ms_poor, mobile_lcp_ms_hist, mobile_fcp_ms_n, mobile_fcp_ms_good, mobile_fcp_ms_poor, mobile_fcp_ms_hist, mobile_inp_ms_n, mobile_inp_ms_good, mobile_inp_ms_poor, mobile_inp_ms_hist, mobile_ttfb_ms_n, mobile_ttfb_ms_good, mobile_ttfb_ms_poor, mobile_ttfb_ms_hist, mobile_cls_n, mobile_cls_good, mobile_cls_poor, mobile_cls_hist, desktop_samples, desktop_score_sum, desktop_lcp_ms_n, desktop_lcp_ms_good, desktop_lcp_ms_poor, desktop_lcp_ms_hist, desktop_fcp_ms_n, desktop_fcp_ms_good, desktop_fcp_ms_poor, desktop_fcp_ms_hist, desktop_inp_ms_n, desktop_inp_ms_good, desktop_inp_ms_poor, desktop_inp_ms_hist, desktop_ttfb_ms_n, desktop_ttfb_ms_good, desktop_ttfb_ms_poor, desktop_ttfb_ms_hist, desktop_cls_n, desktop_cls_good, desktop_cls_poor, desktop_cls_hist) SELECT a.period_start, a.page_id, min(a.site_id), sum(a.traffic_hours), sum(a.users), sum(a.sessions), sum(a.views), sum(a.bounces), sum(a.engagement_seconds), sum(a.mobile_samples), sum(a.mobile_score_sum), sum(a.mobile_lcp_ms_n), sum(a.mobile_lcp_ms_good), sum(a.mobile_lcp_ms_poor), hist_cat_agg(a.mobile_lcp_ms_hist), sum(a.mobile_fcp_ms_n), sum(a.mobile_fcp_ms_good), sum(a.mobile_fcp_ms_poor), hist_cat_agg(a.mobile_fcp_ms_hist), sum(a.mobile_inp_ms_n), sum(a.mobile_inp_ms_good), sum(a.mobile_inp_ms_poor), hist_cat_agg(a.mobile_inp_ms_hist), sum(a.mobile_ttfb_ms_n), sum(a.mobile_ttfb_ms_good), sum(a.mobile_ttfb_ms_poor), hist_cat_agg(a.mobile_ttfb_ms_hist), sum(a.mobile_cls_n), sum(a.mobile_cls_good), sum(a.mobile_cls_poor), hist_cat_agg(a.mobile_cls_hist), sum(a.desktop_samples), sum(a.desktop_score_sum), sum(a.desktop_lcp_ms_n), sum(a.desktop_lcp_ms_good), sum(a.desktop_lcp_ms_poor), hist_cat_agg(a.desktop_lcp_ms_hist), sum(a.desktop_fcp_ms_n), sum(a.desktop_fcp_ms_good), sum(a.desktop_fcp_ms_poor), hist_cat_agg(a.desktop_fcp_ms_hist), sum(a.desktop_inp_ms_n), sum(a.desktop_inp_ms_good), sum(a.desktop_inp_ms_poor), hist_cat_agg(a.desktop_inp_ms_hist), sum(a.desktop_ttfb_ms_n), sum(a.desktop_ttfb_ms_good), sum(a.desktop_ttfb_ms_poor), hist_cat_agg(a.desktop_ttfb_ms_hist), sum(a.desktop_cls_n), sum(a.desktop_cls_good), sum(a.desktop_cls_poor), hist_cat_agg(a.desktop_cls_hist) FROM taken a GROUP BY 1, 2;

-- ---- statement 8 (executed 2 times in a row)
    SELECT array_agg(name ORDER BY ord) FROM catalog_measures();

-- ---- statement 9
format(
        'INSERT INTO %1$I AS t (period_start, %2$s, %3$s) SELECT d.* '
        'FROM (%4$s) AS d ORDER BY d.%5$I, d.period_start '
        'ON CONFLICT (period_start, %5$I) DO UPDATE SET %6$s',
        p_target,
        CASE p_key WHEN 'page_id' THEN 'page_id, site_id' ELSE 'site_id' END,
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(_aggregate_columns()) c),
        p_source, p_key,
        (SELECT string_agg(CASE WHEN kind = 'hist'
                                THEN format('%1$I = hist_add(t.%1$I, EXCLUDED.%1$I)', name)
                                ELSE format('%1$I = t.%1$I + EXCLUDED.%1$I', name) END, ', ')
         FROM catalog_measures()));

-- ---- statement 10
INSERT INTO agg_yearly AS t (period_start, page_id, site_id, traffic_hours, users, sessions, views, bounces, engagement_seconds, mobile_samples, mobile_score_sum, mobile_lcp_ms_n, mobile_lcp_ms_good, mobile_lcp_ms_poor, mobile_lcp_ms_hist, mobile_fcp_ms_n, mobile_fcp_ms_good, mobile_fcp_ms_poor, mobile_fcp_ms_hist, mobile_inp_ms_n, mobile_inp_ms_good, mobile_inp_ms_poor, mobile_inp_ms_hist, mobile_ttfb_ms_n, mobile_ttfb_ms_good, mobile_ttfb_ms_poor, mobile_ttfb_ms_hist, mobile_cls_n, mobile_cls_good, mobile_cls_poor, mobile_cls_hist, desktop_samples, desktop_score_sum, desktop_lcp_ms_n, desktop_lcp_ms_good, desktop_lcp_ms_poor, desktop_lcp_ms_hist, desktop_fcp_ms_n, desktop_fcp_ms_good, desktop_fcp_ms_poor, desktop_fcp_ms_hist, desktop_inp_ms_n, desktop_inp_ms_good, desktop_inp_ms_poor, desktop_inp_ms_hist, desktop_ttfb_ms_n, desktop_ttfb_ms_good, desktop_ttfb_ms_poor, desktop_ttfb_ms_hist, desktop_cls_n, desktop_cls_good, desktop_cls_poor, desktop_cls_hist) SELECT d.* FROM (SELECT * FROM _deltas) AS d ORDER BY d.page_id, d.period_start ON CONFLICT (period_start, page_id) DO UPDATE SET traffic_hours = t.traffic_hours + EXCLUDED.traffic_hours, users = t.users + EXCLUDED.users, sessions = t.sessions + EXCLUDED.sessions, views = t.views + EXCLUDED.views, bounces = t.bounces + EXCLUDED.bounces, engagement_seconds = t.engagement_seconds + EXCLUDED.engagement_seconds, mobile_samples = t.mobile_samples + EXCLUDED.mobile_samples, mobile_score_sum = t.mobile_score_sum + EXCLUDED.mobile_score_sum, mobile_lcp_ms_n = t.mobile_lcp_ms_n + EXCLUDED.mobile_lcp_ms_n, mobile_lcp_ms_good = t.mobile_lcp_ms_good + EXCLUDED.mobile_lcp_ms_good, mobile_lcp_ms_poor = t.mobile_lcp_ms_poor + EXCLUDED.mobile_lcp_ms_poor, mobile_lcp_ms_hist = hist_add(t.mobile_lcp_ms_hist, EXCLUDED.mobile_lcp_ms_hist), mobile_fcp_ms_n = t.mobile_fcp_ms_n + EXCLUDED.mobile_fcp_ms_n, mobile_fcp_ms_good = t.mobile_fcp_ms_good + EXCLUDED.mobile_fcp_ms_good, mobile_fcp_ms_poor = t.mobile_fcp_ms_poor + EXCLUDED.mobile_fcp_ms_poor, mobile_fcp_ms_hist = hist_add(t.mobile_fcp_ms_hist, EXCLUDED.mobile_fcp_ms_hist), mobile_inp_ms_n = t.mobile_inp_ms_n + EXCLUDED.mobile_inp_ms_n, mobile_inp_ms_good = t.mobile_inp_ms_good + EXCLUDED.mobile_inp_ms_good, mobile_inp_ms_poor = t.mobile_inp_ms_poor + EXCLUDED.mobile_inp_ms_poor, mobile_inp_ms_hist = hist_add(t.mobile_inp_ms_hist, EXCLUDED.mobile_inp_ms_hist), mobile_ttfb_ms_n = t.mobile_ttfb_ms_n + EXCLUDED.mobile_ttfb_ms_n, mobile_ttfb_ms_good = t.mobile_ttfb_ms_good + EXCLUDED.mobile_ttfb_ms_good, mobile_ttfb_ms_poor = t.mobile_ttfb_ms_poor + EXCLUDED.mobile_ttfb_ms_poor, mobile_ttfb_ms_hist = hist_add(t.mobile_ttfb_ms_hist, EXCLUDED.mobile_ttfb_ms_hist), mobile_cls_n = t.mobile_cls_n + EXCLUDED.mobile_cls_n, mobile_cls_good = t.mobile_cls_good + EXCLUDED.mobile_cls_good, mobile_cls_poor = t.mobile_cls_poor + EXCLUDED.mobile_cls_poor, mobile_cls_hist = hist_add(t.mobile_cls_hist, EXCLUDED.mobile_cls_hist), desktop_samples = t.desktop_samples + EXCLUDED.desktop_samples, desktop_score_sum = t.desktop_score_sum + EXCLUDED.desktop_score_sum, desktop_lcp_ms_n = t.desktop_lcp_ms_n + EXCLUDED.desktop_lcp_ms_n, desktop_lcp_ms_good = t.desktop_lcp_ms_good + EXCLUDED.desktop_lcp_ms_good, desktop_lcp_ms_poor = t.desktop_lcp_ms_poor + EXCLUDED.desktop_lcp_ms_poor, desktop_lcp_ms_hist = hist_add(t.desktop_lcp_ms_hist, EXCLUDED.desktop_lcp_ms_hist), desktop_fcp_ms_n = t.desktop_fcp_ms_n + EXCLUDED.desktop_fcp_ms_n, desktop_fcp_ms_good = t.desktop_fcp_ms_good + EXCLUDED.desktop_fcp_ms_good, desktop_fcp_ms_poor = t.desktop_fcp_ms_poor + EXCLUDED.desktop_fcp_ms_poor, desktop_fcp_ms_hist = hist_add(t.desktop_fcp_ms_hist, EXCLUDED.desktop_fcp_ms_hist), desktop_inp_ms_n = t.desktop_inp_ms_n + EXCLUDED.desktop_inp_ms_n, desktop_inp_ms_good = t.desktop_inp_ms_good + EXCLUDED.desktop_inp_ms_good, desktop_inp_ms_poor = t.desktop_inp_ms_poor + EXCLUDED.desktop_inp_ms_poor, desktop_inp_ms_hist = hist_add(t.desktop_inp_ms_hist, EXCLUDED.desktop_inp_ms_hist), desktop_ttfb_ms_n = t.desktop_ttfb_ms_n + EXCLUDED.desktop_ttfb_ms_n, desktop_ttfb_ms_good = t.desktop_ttfb_ms_good + EXCLUDED.desktop_ttfb_ms_good, desktop_ttfb_ms_poor = t.desktop_ttfb_ms_poor + EXCLUDED.desktop_ttfb_ms_poor, desktop_ttfb_ms_hist = hist_add(t.desktop_ttfb_ms_hist, EXCLUDED.desktop_ttfb_ms_hist), desktop_cls_n = t.desktop_cls_n + EXCLUDED.desktop_cls_n, desktop_cls_good = t.desktop_cls_good + EXCLUDED.desktop_cls_good, desktop_cls_poor = t.desktop_cls_poor + EXCLUDED.desktop_cls_poor, desktop_cls_hist = hist_add(t.desktop_cls_hist, EXCLUDED.desktop_cls_hist);

-- ---- statement 11
 SELECT * FROM _stage_rollup('yearly', p_from, p_to);

-- ---- statement 12
SELECT rows_in, rows_out FROM "stage_yearly"($1::timestamptz, $2::timestamptz);
