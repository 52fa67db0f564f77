-- The SQL the page stage executes on its first-load path, recorded by
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
INSERT INTO page_hour (page_id, site_id, hour, "users", "sessions", "views", "bounces", "engagement_seconds", "mobile_score", "mobile_lcp_ms", "mobile_fcp_ms", "mobile_inp_ms", "mobile_ttfb_ms", "mobile_cls", "desktop_score", "desktop_lcp_ms", "desktop_fcp_ms", "desktop_inp_ms", "desktop_ttfb_ms", "desktop_cls")
    SELECT k.page_id, pg.site_id, m.*
    FROM (SELECT DISTINCT page_id FROM _stage_keys ORDER BY page_id) AS k
    CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
    CROSS JOIN LATERAL (
        SELECT coalesce(ga.hour, psi.hour) AS hour, "ga"."users", "ga"."sessions", "ga"."views", "ga"."bounces", "ga"."engagement_seconds", "psi"."mobile_score", "psi"."mobile_lcp_ms", "psi"."mobile_fcp_ms", "psi"."mobile_inp_ms", "psi"."mobile_ttfb_ms", "psi"."mobile_cls", "psi"."desktop_score", "psi"."desktop_lcp_ms", "psi"."desktop_fcp_ms", "psi"."desktop_inp_ms", "psi"."desktop_ttfb_ms", "psi"."desktop_cls"
        FROM (SELECT * FROM staged_ga g
              WHERE g.page_id = k.page_id AND g.hour >= p_from AND g.hour < p_to) AS ga
        FULL JOIN (SELECT p.hour, max("p"."performance_score") FILTER (WHERE p.strategy = 'mobile') AS "mobile_score", max("p"."lcp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_lcp_ms", max("p"."fcp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_fcp_ms", max("p"."inp_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_inp_ms", max("p"."ttfb_ms") FILTER (WHERE p.strategy = 'mobile') AS "mobile_ttfb_ms", max("p"."cls") FILTER (WHERE p.strategy = 'mobile') AS "mobile_cls", max("p"."performance_score") FILTER (WHERE p.strategy = 'desktop') AS "desktop_score", max("p"."lcp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_lcp_ms", max("p"."fcp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_fcp_ms", max("p"."inp_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_inp_ms", max("p"."ttfb_ms") FILTER (WHERE p.strategy = 'desktop') AS "desktop_ttfb_ms", max("p"."cls") FILTER (WHERE p.strategy = 'desktop') AS "desktop_cls" FROM staged_psi p
                   WHERE p.page_id = k.page_id AND p.hour >= p_from AND p.hour < p_to
                   GROUP BY p.hour) AS psi ON psi.hour = ga.hour
    ) AS m (hour)
    ORDER BY k.page_id, m.hour;

-- ---- statement 6
INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
        SELECT 'interval', day, page_id, hours FROM _stage_keys ORDER BY day, page_id
        ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
        WHERE d.hours <> d.hours | EXCLUDED.hours;

-- ---- statement 7
SELECT rows_in, rows_out FROM "stage_page"($1::timestamptz, $2::timestamptz);
