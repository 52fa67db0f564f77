-- The SQL the page stage executes on its late path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 1: window 2025-01-01..2025-02-01

-- ---- statement 1
EXISTS (SELECT FROM staged_marker);

-- ---- statement 2
SELECT staged_ensure();

-- ---- statement 3
WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = 'page' AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start AS day, hours
    )
    INSERT INTO _stage_keys SELECT page_id, day, hours FROM keys;

-- ---- statement 4
NOT EXISTS (SELECT FROM page p CROSS JOIN LATERAL (
        SELECT FROM page_hour t WHERE t.page_id = p.id AND t.hour >= p_from AND t.hour < p_to
        LIMIT 1) AS h
    );

-- ---- statement 5
INSERT INTO _stage_ranges
    SELECT page_id, day, day + interval '1 day' FROM _stage_keys WHERE hours = 16777215
    UNION ALL
    SELECT k.page_id, k.day + make_interval(hours => u * p_unit),
           k.day + make_interval(hours => (u + 1) * p_unit)
    FROM _stage_keys k CROSS JOIN generate_series(0, 24 / p_unit - 1) AS u
    WHERE k.hours <> 16777215 AND k.hours & (((1 << p_unit) - 1) << (u * p_unit)) <> 0;

-- ---- statement 6
SELECT _fill_stage_ranges(1);

-- ---- statement 7
CREATE TEMP TABLE IF NOT EXISTS _page_old ON COMMIT DROP AS
            SELECT * FROM page_hour LIMIT 0;

-- ---- statement 8
CREATE TEMP TABLE IF NOT EXISTS _page_new ON COMMIT DROP AS
            SELECT * FROM page_hour LIMIT 0;

-- ---- statement 9
INSERT INTO _page_old
        SELECT t.* FROM (SELECT * FROM _stage_ranges WHERE hi - lo < interval '1 day'
                         ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM page_hour t WHERE t.page_id = r.page_id
                            AND t.hour >= r.lo AND t.hour < r.hi OFFSET 0) AS t;

-- ---- statement 10
WITH ga AS (
        SELECT g.* FROM (SELECT * FROM _stage_ranges ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM staged_ga g WHERE g.page_id = r.page_id
                            AND g.hour >= r.lo AND g.hour < r.hi OFFSET 0) AS g
    ), psi AS (
        SELECT p.page_id, p.hour, max("p"."performance_score") FILTER (WHERE p.strategy = 'mobile') AS "mobile_score", max("p"."lcp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_lcp_ms", max("p"."fcp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_fcp_ms", max("p"."inp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_inp_ms", max("p"."ttfb_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_ttfb_ms", max("p"."cls") FILTER (WHERE p.strategy = 'mobile') AS "mobile_cls", max("p"."performance_score") FILTER (WHERE p.strategy = 'desktop') AS "desktop_score", max("p"."lcp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_lcp_ms", max("p"."fcp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_fcp_ms", max("p"."inp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_inp_ms", max("p"."ttfb_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_ttfb_ms", max("p"."cls") FILTER (WHERE p.strategy = 'desktop') AS "desktop_cls"
        FROM (SELECT * FROM _stage_ranges ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM staged_psi p WHERE p.page_id = r.page_id
                            AND p.hour >= r.lo AND p.hour < r.hi OFFSET 0) AS p
        GROUP BY p.page_id, p.hour
    ), merged AS (
        SELECT coalesce(ga.hour, psi.hour) AS hour,
               coalesce(ga.page_id, psi.page_id) AS page_id, "ga"."users", "ga"."sessions", "ga"."views", "ga"."bounces", "ga"."engagement_seconds", "psi"."mobile_score", "psi"."mobile_lcp_ms", "psi"."mobile_fcp_ms", "psi"."mobile_inp_ms", "psi"."mobile_ttfb_ms", "psi"."mobile_cls", "psi"."desktop_score", "psi"."desktop_lcp_ms", "psi"."desktop_fcp_ms", "psi"."desktop_inp_ms", "psi"."desktop_ttfb_ms", "psi"."desktop_cls"
        FROM ga FULL OUTER JOIN psi ON psi.page_id = ga.page_id AND psi.hour = ga.hour
    ), written AS (
        INSERT INTO page_hour AS t (hour, page_id, site_id, "users", "sessions", "views", "bounces", "engagement_seconds", "mobile_score", "mobile_lcp_ms", "mobile_fcp_ms", "mobile_inp_ms", "mobile_ttfb_ms", "mobile_cls", "desktop_score", "desktop_lcp_ms", "desktop_fcp_ms", "desktop_inp_ms", "desktop_ttfb_ms", "desktop_cls")
        SELECT m.hour, m.page_id, pg.site_id, "m"."users", "m"."sessions", "m"."views", "m"."bounces", "m"."engagement_seconds", "m"."mobile_score", "m"."mobile_lcp_ms", "m"."mobile_fcp_ms", "m"."mobile_inp_ms", "m"."mobile_ttfb_ms", "m"."mobile_cls", "m"."desktop_score", "m"."desktop_lcp_ms", "m"."desktop_fcp_ms", "m"."desktop_inp_ms", "m"."desktop_ttfb_ms", "m"."desktop_cls"
        FROM merged m JOIN page pg ON pg.id = m.page_id
        ORDER BY m.page_id, m.hour
        ON CONFLICT (hour, page_id) DO UPDATE SET "users" = EXCLUDED."users", "sessions" = EXCLUDED."sessions", "views" = EXCLUDED."views", "bounces" = EXCLUDED."bounces", "engagement_seconds" = EXCLUDED."engagement_seconds", "mobile_score" = EXCLUDED."mobile_score", "mobile_lcp_ms" = EXCLUDED."mobile_lcp_ms", "mobile_fcp_ms" = EXCLUDED."mobile_fcp_ms", "mobile_inp_ms" = EXCLUDED."mobile_inp_ms", "mobile_ttfb_ms" = EXCLUDED."mobile_ttfb_ms", "mobile_cls" = EXCLUDED."mobile_cls", "desktop_score" = EXCLUDED."desktop_score", "desktop_lcp_ms" = EXCLUDED."desktop_lcp_ms", "desktop_fcp_ms" = EXCLUDED."desktop_fcp_ms", "desktop_inp_ms" = EXCLUDED."desktop_inp_ms", "desktop_ttfb_ms" = EXCLUDED."desktop_ttfb_ms", "desktop_cls" = EXCLUDED."desktop_cls"
        RETURNING t.*
    )
    INSERT INTO _page_new SELECT * FROM written;

-- ---- statement 11
DELETE FROM _page_new n USING _stage_keys k
        WHERE k.hours = 16777215 AND k.page_id = n.page_id AND n.hour >= k.day
          AND n.hour < k.day + interval '1 day';

-- ---- statement 12
INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
        SELECT 'interval', day, page_id, hours FROM _stage_keys WHERE hours = 16777215
        ORDER BY day, page_id
        ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = EXCLUDED.hours
        WHERE d.hours <> EXCLUDED.hours;

-- ---- statement 13
INSERT INTO pipeline_delta (stage, period_start, page_id, site_id, "traffic_hours", "users", "sessions", "views", "bounces", "engagement_seconds", "mobile_samples", "mobile_score_sum", "mobile_lcp_ms_n", "mobile_lcp_ms_good", "mobile_lcp_ms_poor", "mobile_lcp_ms_hist", "mobile_fcp_ms_n", "mobile_fcp_ms_good", "mobile_fcp_ms_poor", "mobile_fcp_ms_hist", "mobile_inp_ms_n", "mobile_inp_ms_good", "mobile_inp_ms_poor", "mobile_inp_ms_hist", "mobile_ttfb_ms_n", "mobile_ttfb_ms_good", "mobile_ttfb_ms_poor", "mobile_ttfb_ms_hist", "mobile_cls_n", "mobile_cls_good", "mobile_cls_poor", "mobile_cls_hist", "desktop_samples", "desktop_score_sum", "desktop_lcp_ms_n", "desktop_lcp_ms_good", "desktop_lcp_ms_poor", "desktop_lcp_ms_hist", "desktop_fcp_ms_n", "desktop_fcp_ms_good", "desktop_fcp_ms_poor", "desktop_fcp_ms_hist", "desktop_inp_ms_n", "desktop_inp_ms_good", "desktop_inp_ms_poor", "desktop_inp_ms_hist", "desktop_ttfb_ms_n", "desktop_ttfb_ms_good", "desktop_ttfb_ms_poor", "desktop_ttfb_ms_hist", "desktop_cls_n", "desktop_cls_good", "desktop_cls_poor", "desktop_cls_hist")
    SELECT 'interval', a.hour, a.page_id, min(a.site_id), coalesce(sum(a.sign) FILTER (WHERE "a"."users" IS NOT NULL), 0) AS "traffic_hours", coalesce(sum(a.sign * "a"."users"), 0) AS "users", coalesce(sum(a.sign * "a"."sessions"), 0) AS "sessions", coalesce(sum(a.sign * "a"."views"), 0) AS "views", coalesce(sum(a.sign * "a"."bounces"), 0) AS "bounces", exact_numeric(coalesce(sum(trunc(a.sign * "a"."engagement_seconds")), 0)) + exact_numeric(coalesce(sum(round((a.sign * "a"."engagement_seconds" - trunc(a.sign * "a"."engagement_seconds")) * 1e6)), 0)) * 0.000001 AS "engagement_seconds", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_score" IS NOT NULL), 0) AS "mobile_samples", exact_numeric(coalesce(sum(trunc(a.sign * "a"."mobile_score")), 0)) + exact_numeric(coalesce(sum(round((a.sign * "a"."mobile_score" - trunc(a.sign * "a"."mobile_score")) * 1e6)), 0)) * 0.000001 AS "mobile_score_sum", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_lcp_ms" IS NOT NULL), 0) AS "mobile_lcp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_lcp_ms" <= 2500), 0) AS "mobile_lcp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_lcp_ms" > 4000), 0) AS "mobile_lcp_ms_poor", array_agg((hist_bucket("a"."mobile_lcp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."mobile_lcp_ms" IS NOT NULL) AS "mobile_lcp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_fcp_ms" IS NOT NULL), 0) AS "mobile_fcp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_fcp_ms" <= 1800), 0) AS "mobile_fcp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_fcp_ms" > 3000), 0) AS "mobile_fcp_ms_poor", array_agg((hist_bucket("a"."mobile_fcp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."mobile_fcp_ms" IS NOT NULL) AS "mobile_fcp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_inp_ms" IS NOT NULL), 0) AS "mobile_inp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_inp_ms" <= 200), 0) AS "mobile_inp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_inp_ms" > 500), 0) AS "mobile_inp_ms_poor", array_agg((hist_bucket("a"."mobile_inp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."mobile_inp_ms" IS NOT NULL) AS "mobile_inp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_ttfb_ms" IS NOT NULL), 0) AS "mobile_ttfb_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_ttfb_ms" <= 800), 0) AS "mobile_ttfb_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_ttfb_ms" > 1800), 0) AS "mobile_ttfb_ms_poor", array_agg((hist_bucket("a"."mobile_ttfb_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."mobile_ttfb_ms" IS NOT NULL) AS "mobile_ttfb_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_cls" IS NOT NULL), 0) AS "mobile_cls_n", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_cls" <= 0.1), 0) AS "mobile_cls_good", coalesce(sum(a.sign) FILTER (WHERE "a"."mobile_cls" > 0.25), 0) AS "mobile_cls_poor", array_agg((hist_bucket("a"."mobile_cls")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."mobile_cls" IS NOT NULL) AS "mobile_cls_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_score" IS NOT NULL), 0) AS "desktop_samples", exact_numeric(coalesce(sum(trunc(a.sign * "a"."desktop_score")), 0)) + exact_numeric(coalesce(sum(round((a.sign * "a"."desktop_score" - trunc(a.sign * "a"."desktop_score")) * 1e6)), 0)) * 0.000001 AS "desktop_score_sum", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_lcp_ms" IS NOT NULL), 0) AS "desktop_lcp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_lcp_ms" <= 2500), 0) AS "desktop_lcp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_lcp_ms" > 4000), 0) AS "desktop_lcp_ms_poor", array_agg((hist_bucket("a"."desktop_lcp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."desktop_lcp_ms" IS NOT NULL) AS "desktop_lcp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_fcp_ms" IS NOT NULL), 0) AS "desktop_fcp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_fcp_ms" <= 1800), 0) AS "desktop_fcp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_fcp_ms" > 3000), 0) AS "desktop_fcp_ms_poor", array_agg((hist_bucket("a"."desktop_fcp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."desktop_fcp_ms" IS NOT NULL) AS "desktop_fcp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_inp_ms" IS NOT NULL), 0) AS "desktop_inp_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_inp_ms" <= 200), 0) AS "desktop_inp_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_inp_ms" > 500), 0) AS "desktop_inp_ms_poor", array_agg((hist_bucket("a"."desktop_inp_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."desktop_inp_ms" IS NOT NULL) AS "desktop_inp_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_ttfb_ms" IS NOT NULL), 0) AS "desktop_ttfb_ms_n", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_ttfb_ms" <= 800), 0) AS "desktop_ttfb_ms_good", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_ttfb_ms" > 1800), 0) AS "desktop_ttfb_ms_poor", array_agg((hist_bucket("a"."desktop_ttfb_ms")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."desktop_ttfb_ms" IS NOT NULL) AS "desktop_ttfb_ms_hist", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_cls" IS NOT NULL), 0) AS "desktop_cls_n", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_cls" <= 0.1), 0) AS "desktop_cls_good", coalesce(sum(a.sign) FILTER (WHERE "a"."desktop_cls" > 0.25), 0) AS "desktop_cls_poor", array_agg((hist_bucket("a"."desktop_cls")::bigint << 32) + a.sign::bigint) FILTER (WHERE "a"."desktop_cls" IS NOT NULL) AS "desktop_cls_hist" FROM (
        SELECT 1 AS sign, * FROM _page_new UNION ALL SELECT -1, * FROM _page_old
    ) AS a GROUP BY a.hour, a.page_id ORDER BY a.hour, a.page_id;

-- ---- statement 14
SELECT _page_deltas();

-- ---- statement 15
SELECT rows_in, rows_out FROM "stage_page"($1::timestamptz, $2::timestamptz);
