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
SELECT string_agg(format('max(p.%1$I) FILTER (WHERE p.strategy = %2$L) AS %3$s_%4$s',
                             c.col, s.strategy, left(s.strategy, 1), c.alias), ', '
                      ORDER BY s.ord, c.ord)
                         FROM catalog_strategies() AS s (ord, strategy)
     CROSS JOIN (VALUES (1, 'performance_score', 'score'), (2, 'lcp_ms', 'lcp'),
                        (3, 'fcp_ms', 'fcp'), (4, 'inp_ms', 'inp'), (5, 'ttfb_ms', 'ttfb'),
                        (6, 'cls', 'cls')) AS c (ord, col, alias);

-- ---- statement 5
NOT EXISTS (SELECT FROM page_hour WHERE hour >= p_from AND hour < p_to);

-- ---- statement 6
        INSERT INTO page_hour (page_id, site_id, hour, users, sessions, views, bounces, engagement_seconds, mobile_score, mobile_lcp_ms, mobile_fcp_ms, mobile_inp_ms, mobile_ttfb_ms, mobile_cls, desktop_score, desktop_lcp_ms, desktop_fcp_ms, desktop_inp_ms, desktop_ttfb_ms, desktop_cls)
        SELECT k.page_id, pg.site_id, m.*
        FROM (SELECT DISTINCT page_id FROM _stage_keys ORDER BY page_id) AS k
        CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
        CROSS JOIN LATERAL (
            SELECT coalesce(ga.hour, psi.hour) AS hour, ga.users, ga.sessions, ga.views, ga.bounces, ga.engagement_seconds, psi.m_score, psi.m_lcp, psi.m_fcp, psi.m_inp, psi.m_ttfb, psi.m_cls, psi.d_score, psi.d_lcp, psi.d_fcp, psi.d_inp, psi.d_ttfb, psi.d_cls
            FROM (SELECT * FROM staged_ga g
                  WHERE g.page_id = k.page_id AND g.hour >= $1 AND g.hour < $2) AS ga
            FULL JOIN (SELECT p.hour, max(p.performance_score) FILTER (WHERE p.strategy = 'mobile') AS m_score, max(p.lcp_ms) FILTER (WHERE p.strategy = 'mobile') AS m_lcp, max(p.fcp_ms) FILTER (WHERE p.strategy = 'mobile') AS m_fcp, max(p.inp_ms) FILTER (WHERE p.strategy = 'mobile') AS m_inp, max(p.ttfb_ms) FILTER (WHERE p.strategy = 'mobile') AS m_ttfb, max(p.cls) FILTER (WHERE p.strategy = 'mobile') AS m_cls, max(p.performance_score) FILTER (WHERE p.strategy = 'desktop') AS d_score, max(p.lcp_ms) FILTER (WHERE p.strategy = 'desktop') AS d_lcp, max(p.fcp_ms) FILTER (WHERE p.strategy = 'desktop') AS d_fcp, max(p.inp_ms) FILTER (WHERE p.strategy = 'desktop') AS d_inp, max(p.ttfb_ms) FILTER (WHERE p.strategy = 'desktop') AS d_ttfb, max(p.cls) FILTER (WHERE p.strategy = 'desktop') AS d_cls FROM staged_psi p
                       WHERE p.page_id = k.page_id AND p.hour >= $1 AND p.hour < $2
                       GROUP BY p.hour) AS psi ON psi.hour = ga.hour
        ) AS m (hour)
        ORDER BY k.page_id, m.hour;

-- ---- statement 7
INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
        SELECT 'interval', day, page_id, hours FROM _stage_keys ORDER BY day, page_id
        ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
        WHERE d.hours <> d.hours | EXCLUDED.hours;

-- ---- statement 8
SELECT rows_in, rows_out FROM "stage_page"($1::timestamptz, $2::timestamptz);
