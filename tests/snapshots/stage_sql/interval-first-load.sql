-- The SQL the interval stage executes on its first-load path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 1: window 2025-01-01..2025-02-01

-- ---- statement 1
WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = 'interval' AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start AS day, hours
    )
    INSERT INTO _stage_keys SELECT page_id, day, hours FROM keys;

-- ---- statement 2
NOT EXISTS (SELECT FROM pipeline_delta
                   WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to);

-- ---- statement 3
EXISTS (SELECT FROM agg_interval WHERE period_start >= p_from AND period_start < p_to);

-- ---- statement 4
INSERT INTO "agg_interval" (period_start, page_id, site_id, "traffic_hours", "users", "sessions", "views", "bounces", "engagement_seconds", "mobile_samples", "mobile_score_sum", "mobile_lcp_ms_n", "mobile_lcp_ms_good", "mobile_lcp_ms_poor", "mobile_lcp_ms_hist", "mobile_fcp_ms_n", "mobile_fcp_ms_good", "mobile_fcp_ms_poor", "mobile_fcp_ms_hist", "mobile_inp_ms_n", "mobile_inp_ms_good", "mobile_inp_ms_poor", "mobile_inp_ms_hist", "mobile_ttfb_ms_n", "mobile_ttfb_ms_good", "mobile_ttfb_ms_poor", "mobile_ttfb_ms_hist", "mobile_cls_n", "mobile_cls_good", "mobile_cls_poor", "mobile_cls_hist", "desktop_samples", "desktop_score_sum", "desktop_lcp_ms_n", "desktop_lcp_ms_good", "desktop_lcp_ms_poor", "desktop_lcp_ms_hist", "desktop_fcp_ms_n", "desktop_fcp_ms_good", "desktop_fcp_ms_poor", "desktop_fcp_ms_hist", "desktop_inp_ms_n", "desktop_inp_ms_good", "desktop_inp_ms_poor", "desktop_inp_ms_hist", "desktop_ttfb_ms_n", "desktop_ttfb_ms_good", "desktop_ttfb_ms_poor", "desktop_ttfb_ms_hist", "desktop_cls_n", "desktop_cls_good", "desktop_cls_poor", "desktop_cls_hist")
    SELECT m.* FROM (SELECT DISTINCT page_id FROM "_stage_keys" ORDER BY page_id) AS k
    CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
    CROSS JOIN LATERAL (
        SELECT interval_start(a.hour, p_hours) AS period_start, k.page_id, pg.site_id, count("a"."users") AS "traffic_hours", coalesce(sum("a"."users"), 0) AS "users", coalesce(sum("a"."sessions"), 0) AS "sessions", coalesce(sum("a"."views"), 0) AS "views", coalesce(sum("a"."bounces"), 0) AS "bounces", exact_numeric(coalesce(sum(trunc("a"."engagement_seconds")), 0)) + exact_numeric(coalesce(sum(round(("a"."engagement_seconds" - trunc("a"."engagement_seconds")) * 1e6)), 0)) * 0.000001 AS "engagement_seconds", count("a"."mobile_score") AS "mobile_samples", exact_numeric(coalesce(sum(trunc("a"."mobile_score")), 0)) + exact_numeric(coalesce(sum(round(("a"."mobile_score" - trunc("a"."mobile_score")) * 1e6)), 0)) * 0.000001 AS "mobile_score_sum", count("a"."mobile_lcp_ms") AS "mobile_lcp_ms_n", count(*) FILTER (WHERE "a"."mobile_lcp_ms" <= 2500) AS "mobile_lcp_ms_good", count(*) FILTER (WHERE "a"."mobile_lcp_ms" > 4000) AS "mobile_lcp_ms_poor", array_agg((hist_bucket("a"."mobile_lcp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."mobile_lcp_ms" IS NOT NULL) AS "mobile_lcp_ms_hist", count("a"."mobile_fcp_ms") AS "mobile_fcp_ms_n", count(*) FILTER (WHERE "a"."mobile_fcp_ms" <= 1800) AS "mobile_fcp_ms_good", count(*) FILTER (WHERE "a"."mobile_fcp_ms" > 3000) AS "mobile_fcp_ms_poor", array_agg((hist_bucket("a"."mobile_fcp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."mobile_fcp_ms" IS NOT NULL) AS "mobile_fcp_ms_hist", count("a"."mobile_inp_ms") AS "mobile_inp_ms_n", count(*) FILTER (WHERE "a"."mobile_inp_ms" <= 200) AS "mobile_inp_ms_good", count(*) FILTER (WHERE "a"."mobile_inp_ms" > 500) AS "mobile_inp_ms_poor", array_agg((hist_bucket("a"."mobile_inp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."mobile_inp_ms" IS NOT NULL) AS "mobile_inp_ms_hist", count("a"."mobile_ttfb_ms") AS "mobile_ttfb_ms_n", count(*) FILTER (WHERE "a"."mobile_ttfb_ms" <= 800) AS "mobile_ttfb_ms_good", count(*) FILTER (WHERE "a"."mobile_ttfb_ms" > 1800) AS "mobile_ttfb_ms_poor", array_agg((hist_bucket("a"."mobile_ttfb_ms")::bigint << 32) + 1) FILTER (WHERE "a"."mobile_ttfb_ms" IS NOT NULL) AS "mobile_ttfb_ms_hist", count("a"."mobile_cls") AS "mobile_cls_n", count(*) FILTER (WHERE "a"."mobile_cls" <= 0.1) AS "mobile_cls_good", count(*) FILTER (WHERE "a"."mobile_cls" > 0.25) AS "mobile_cls_poor", array_agg((hist_bucket("a"."mobile_cls")::bigint << 32) + 1) FILTER (WHERE "a"."mobile_cls" IS NOT NULL) AS "mobile_cls_hist", count("a"."desktop_score") AS "desktop_samples", exact_numeric(coalesce(sum(trunc("a"."desktop_score")), 0)) + exact_numeric(coalesce(sum(round(("a"."desktop_score" - trunc("a"."desktop_score")) * 1e6)), 0)) * 0.000001 AS "desktop_score_sum", count("a"."desktop_lcp_ms") AS "desktop_lcp_ms_n", count(*) FILTER (WHERE "a"."desktop_lcp_ms" <= 2500) AS "desktop_lcp_ms_good", count(*) FILTER (WHERE "a"."desktop_lcp_ms" > 4000) AS "desktop_lcp_ms_poor", array_agg((hist_bucket("a"."desktop_lcp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."desktop_lcp_ms" IS NOT NULL) AS "desktop_lcp_ms_hist", count("a"."desktop_fcp_ms") AS "desktop_fcp_ms_n", count(*) FILTER (WHERE "a"."desktop_fcp_ms" <= 1800) AS "desktop_fcp_ms_good", count(*) FILTER (WHERE "a"."desktop_fcp_ms" > 3000) AS "desktop_fcp_ms_poor", array_agg((hist_bucket("a"."desktop_fcp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."desktop_fcp_ms" IS NOT NULL) AS "desktop_fcp_ms_hist", count("a"."desktop_inp_ms") AS "desktop_inp_ms_n", count(*) FILTER (WHERE "a"."desktop_inp_ms" <= 200) AS "desktop_inp_ms_good", count(*) FILTER (WHERE "a"."desktop_inp_ms" > 500) AS "desktop_inp_ms_poor", array_agg((hist_bucket("a"."desktop_inp_ms")::bigint << 32) + 1) FILTER (WHERE "a"."desktop_inp_ms" IS NOT NULL) AS "desktop_inp_ms_hist", count("a"."desktop_ttfb_ms") AS "desktop_ttfb_ms_n", count(*) FILTER (WHERE "a"."desktop_ttfb_ms" <= 800) AS "desktop_ttfb_ms_good", count(*) FILTER (WHERE "a"."desktop_ttfb_ms" > 1800) AS "desktop_ttfb_ms_poor", array_agg((hist_bucket("a"."desktop_ttfb_ms")::bigint << 32) + 1) FILTER (WHERE "a"."desktop_ttfb_ms" IS NOT NULL) AS "desktop_ttfb_ms_hist", count("a"."desktop_cls") AS "desktop_cls_n", count(*) FILTER (WHERE "a"."desktop_cls" <= 0.1) AS "desktop_cls_good", count(*) FILTER (WHERE "a"."desktop_cls" > 0.25) AS "desktop_cls_poor", array_agg((hist_bucket("a"."desktop_cls")::bigint << 32) + 1) FILTER (WHERE "a"."desktop_cls" IS NOT NULL) AS "desktop_cls_hist" FROM "page_hour" a
        WHERE a.page_id = k.page_id AND a."hour" >= p_from AND a."hour" < p_to GROUP BY 1
    ) AS m ORDER BY m.page_id, m.period_start;

-- ---- statement 5
DELETE FROM _deltas WHERE page_id IN (SELECT page_id FROM _stage_keys);

-- ---- statement 6
INSERT INTO _stage_keys
            SELECT DISTINCT t.page_id, utc_trunc('day', t.period_start), 16777215
            FROM agg_interval t
            WHERE t.page_id IN (SELECT page_id FROM _stage_keys)
              AND t.period_start >= p_from AND t.period_start < p_to
              AND NOT EXISTS (SELECT FROM _stage_keys k WHERE k.page_id = t.page_id
                              AND k.day = utc_trunc('day', t.period_start));

-- ---- statement 7
INSERT INTO pipeline_dirty (stage, period_start, page_id)
        SELECT 'daily', day, page_id FROM _stage_keys ORDER BY day, page_id
        ON CONFLICT DO NOTHING;

-- ---- statement 8
SELECT rows_in, rows_out FROM stage_interval($1::timestamptz, $2::timestamptz, $3);
