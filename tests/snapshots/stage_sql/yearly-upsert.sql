-- The SQL the yearly stage executes on its upsert path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 1: window 2025-01-01..2026-01-01

-- ---- statement 1
SELECT *              FROM catalog_stages() WHERE name = p_stage
                                                  AND period IN ('day', 'month', 'year');

-- ---- statement 2
WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start
    )
    INSERT INTO _rollup_keys SELECT page_id, period_start FROM keys;

-- ---- statement 3
NOT EXISTS (SELECT FROM pipeline_delta
                   WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to);

-- ---- statement 4
EXISTS (SELECT FROM "agg_yearly" WHERE period_start >= p_from AND period_start < p_to);

-- ---- statement 5 (executed 80 times in a row)
    SELECT array_agg((b << 32) + c ORDER BY b)
    FROM (SELECT hist_element_bucket(e)::bigint AS b, sum(hist_element_count(e))::bigint AS c
          FROM unnest(h) AS e GROUP BY 1) AS merged
    WHERE c <> 0;

-- ---- statement 6
INSERT INTO "agg_yearly" AS t (period_start, page_id, site_id, "traffic_hours", "users", "sessions", "views", "bounces", "engagement_seconds", "mobile_samples", "mobile_score_sum", "mobile_lcp_ms_n", "mobile_lcp_ms_good", "mobile_lcp_ms_poor", "mobile_lcp_ms_hist", "mobile_fcp_ms_n", "mobile_fcp_ms_good", "mobile_fcp_ms_poor", "mobile_fcp_ms_hist", "mobile_inp_ms_n", "mobile_inp_ms_good", "mobile_inp_ms_poor", "mobile_inp_ms_hist", "mobile_ttfb_ms_n", "mobile_ttfb_ms_good", "mobile_ttfb_ms_poor", "mobile_ttfb_ms_hist", "mobile_cls_n", "mobile_cls_good", "mobile_cls_poor", "mobile_cls_hist", "desktop_samples", "desktop_score_sum", "desktop_lcp_ms_n", "desktop_lcp_ms_good", "desktop_lcp_ms_poor", "desktop_lcp_ms_hist", "desktop_fcp_ms_n", "desktop_fcp_ms_good", "desktop_fcp_ms_poor", "desktop_fcp_ms_hist", "desktop_inp_ms_n", "desktop_inp_ms_good", "desktop_inp_ms_poor", "desktop_inp_ms_hist", "desktop_ttfb_ms_n", "desktop_ttfb_ms_good", "desktop_ttfb_ms_poor", "desktop_ttfb_ms_hist", "desktop_cls_n", "desktop_cls_good", "desktop_cls_poor", "desktop_cls_hist")
    SELECT k.period, a.page_id, min(a.site_id), sum("a"."traffic_hours"), sum("a"."users"), sum("a"."sessions"), sum("a"."views"), sum("a"."bounces"), sum("a"."engagement_seconds"), sum("a"."mobile_samples"), sum("a"."mobile_score_sum"), sum("a"."mobile_lcp_ms_n"), sum("a"."mobile_lcp_ms_good"), sum("a"."mobile_lcp_ms_poor"), hist_merge_agg("a"."mobile_lcp_ms_hist"), sum("a"."mobile_fcp_ms_n"), sum("a"."mobile_fcp_ms_good"), sum("a"."mobile_fcp_ms_poor"), hist_merge_agg("a"."mobile_fcp_ms_hist"), sum("a"."mobile_inp_ms_n"), sum("a"."mobile_inp_ms_good"), sum("a"."mobile_inp_ms_poor"), hist_merge_agg("a"."mobile_inp_ms_hist"), sum("a"."mobile_ttfb_ms_n"), sum("a"."mobile_ttfb_ms_good"), sum("a"."mobile_ttfb_ms_poor"), hist_merge_agg("a"."mobile_ttfb_ms_hist"), sum("a"."mobile_cls_n"), sum("a"."mobile_cls_good"), sum("a"."mobile_cls_poor"), hist_merge_agg("a"."mobile_cls_hist"), sum("a"."desktop_samples"), sum("a"."desktop_score_sum"), sum("a"."desktop_lcp_ms_n"), sum("a"."desktop_lcp_ms_good"), sum("a"."desktop_lcp_ms_poor"), hist_merge_agg("a"."desktop_lcp_ms_hist"), sum("a"."desktop_fcp_ms_n"), sum("a"."desktop_fcp_ms_good"), sum("a"."desktop_fcp_ms_poor"), hist_merge_agg("a"."desktop_fcp_ms_hist"), sum("a"."desktop_inp_ms_n"), sum("a"."desktop_inp_ms_good"), sum("a"."desktop_inp_ms_poor"), hist_merge_agg("a"."desktop_inp_ms_hist"), sum("a"."desktop_ttfb_ms_n"), sum("a"."desktop_ttfb_ms_good"), sum("a"."desktop_ttfb_ms_poor"), hist_merge_agg("a"."desktop_ttfb_ms_hist"), sum("a"."desktop_cls_n"), sum("a"."desktop_cls_good"), sum("a"."desktop_cls_poor"), hist_merge_agg("a"."desktop_cls_hist") FROM "agg_monthly" a
    JOIN _rollup_keys k ON k.page_id = a.page_id
      AND a.period_start >= k.period AND a.period_start < k.period + '1 year'::interval
    WHERE a.period_start >= p_from AND a.period_start < p_to
    GROUP BY k.period, a.page_id ORDER BY a.page_id, k.period
    ON CONFLICT (period_start, page_id) DO UPDATE SET "traffic_hours" = EXCLUDED."traffic_hours", "users" = EXCLUDED."users", "sessions" = EXCLUDED."sessions", "views" = EXCLUDED."views", "bounces" = EXCLUDED."bounces", "engagement_seconds" = EXCLUDED."engagement_seconds", "mobile_samples" = EXCLUDED."mobile_samples", "mobile_score_sum" = EXCLUDED."mobile_score_sum", "mobile_lcp_ms_n" = EXCLUDED."mobile_lcp_ms_n", "mobile_lcp_ms_good" = EXCLUDED."mobile_lcp_ms_good", "mobile_lcp_ms_poor" = EXCLUDED."mobile_lcp_ms_poor", "mobile_lcp_ms_hist" = EXCLUDED."mobile_lcp_ms_hist", "mobile_fcp_ms_n" = EXCLUDED."mobile_fcp_ms_n", "mobile_fcp_ms_good" = EXCLUDED."mobile_fcp_ms_good", "mobile_fcp_ms_poor" = EXCLUDED."mobile_fcp_ms_poor", "mobile_fcp_ms_hist" = EXCLUDED."mobile_fcp_ms_hist", "mobile_inp_ms_n" = EXCLUDED."mobile_inp_ms_n", "mobile_inp_ms_good" = EXCLUDED."mobile_inp_ms_good", "mobile_inp_ms_poor" = EXCLUDED."mobile_inp_ms_poor", "mobile_inp_ms_hist" = EXCLUDED."mobile_inp_ms_hist", "mobile_ttfb_ms_n" = EXCLUDED."mobile_ttfb_ms_n", "mobile_ttfb_ms_good" = EXCLUDED."mobile_ttfb_ms_good", "mobile_ttfb_ms_poor" = EXCLUDED."mobile_ttfb_ms_poor", "mobile_ttfb_ms_hist" = EXCLUDED."mobile_ttfb_ms_hist", "mobile_cls_n" = EXCLUDED."mobile_cls_n", "mobile_cls_good" = EXCLUDED."mobile_cls_good", "mobile_cls_poor" = EXCLUDED."mobile_cls_poor", "mobile_cls_hist" = EXCLUDED."mobile_cls_hist", "desktop_samples" = EXCLUDED."desktop_samples", "desktop_score_sum" = EXCLUDED."desktop_score_sum", "desktop_lcp_ms_n" = EXCLUDED."desktop_lcp_ms_n", "desktop_lcp_ms_good" = EXCLUDED."desktop_lcp_ms_good", "desktop_lcp_ms_poor" = EXCLUDED."desktop_lcp_ms_poor", "desktop_lcp_ms_hist" = EXCLUDED."desktop_lcp_ms_hist", "desktop_fcp_ms_n" = EXCLUDED."desktop_fcp_ms_n", "desktop_fcp_ms_good" = EXCLUDED."desktop_fcp_ms_good", "desktop_fcp_ms_poor" = EXCLUDED."desktop_fcp_ms_poor", "desktop_fcp_ms_hist" = EXCLUDED."desktop_fcp_ms_hist", "desktop_inp_ms_n" = EXCLUDED."desktop_inp_ms_n", "desktop_inp_ms_good" = EXCLUDED."desktop_inp_ms_good", "desktop_inp_ms_poor" = EXCLUDED."desktop_inp_ms_poor", "desktop_inp_ms_hist" = EXCLUDED."desktop_inp_ms_hist", "desktop_ttfb_ms_n" = EXCLUDED."desktop_ttfb_ms_n", "desktop_ttfb_ms_good" = EXCLUDED."desktop_ttfb_ms_good", "desktop_ttfb_ms_poor" = EXCLUDED."desktop_ttfb_ms_poor", "desktop_ttfb_ms_hist" = EXCLUDED."desktop_ttfb_ms_hist", "desktop_cls_n" = EXCLUDED."desktop_cls_n", "desktop_cls_good" = EXCLUDED."desktop_cls_good", "desktop_cls_poor" = EXCLUDED."desktop_cls_poor", "desktop_cls_hist" = EXCLUDED."desktop_cls_hist";

-- ---- statement 7
DELETE FROM _deltas d USING _rollup_keys k
            WHERE d.page_id = k.page_id AND d.period_start = k.period;

-- ---- statement 8
 SELECT * FROM _stage_rollup('yearly', p_from, p_to);

-- ---- statement 9
SELECT rows_in, rows_out FROM "stage_yearly"($1::timestamptz, $2::timestamptz);
