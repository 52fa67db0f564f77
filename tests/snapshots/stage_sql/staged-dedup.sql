-- The SQL the staged stage executes on its dedup path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 4: ga batch, repeating a key, into an empty staged table

-- ---- statement 1
EXISTS (SELECT FROM staged_marker);

-- ---- statement 2
SELECT staged_ensure();

-- ---- statement 3
SELECT source, first_hour, last_hour                                           FROM ingest_batch WHERE id = p_batch;

-- ---- statement 4
v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_ga s WHERE s.page_id = p.id AND s.hour >= p_first
                                      AND s.hour <= p_last));

-- ---- statement 5
v_empty := NOT EXISTS (SELECT FROM staged_ga);

-- ---- statement 6
INSERT INTO "staged_ga" ("hour", "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position")
    SELECT hour, "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position"
    FROM "raw_ga" WHERE batch_id = p_batch
    ORDER BY (page_id::bigint << 32) + floor(date_part('epoch', hour) / 3600)::bigint;

-- ---- statement 7
SELECT set_config('maintenance_work_mem', '1GB', true);

-- ---- statement 8
WITH src AS MATERIALIZED (
        SELECT DISTINCT ON ("page_id", hour) *
        FROM "raw_ga" WHERE batch_id = p_batch
        ORDER BY "page_id", hour, position DESC
    ), upd AS (
        UPDATE "staged_ga" AS s SET "users" = src."users", "sessions" = src."sessions", "views" = src."views", "bounces" = src."bounces", "engagement_seconds" = src."engagement_seconds", "batch_id" = src."batch_id", "position" = src."position"
        FROM src
        WHERE s."page_id" = src."page_id" AND s."hour" = src."hour"
          AND (s.batch_id, s.position) < (src.batch_id, src.position)
        RETURNING s.page_id, s.hour
    ), ins AS (
        INSERT INTO "staged_ga" ("hour", "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position")
        SELECT "hour", "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position"
        FROM src
        WHERE NOT EXISTS (SELECT FROM "staged_ga" s WHERE s."page_id" = src."page_id" AND s."hour" = src."hour")
        RETURNING page_id, hour
    ), changed AS (
        SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
    ), mark AS (
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "hour"), page_id, bit_or(hour_bit("hour"))
    FROM changed GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours
    )
    SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed);

-- ---- statement 9
SELECT d.rows_in, d.rows_out                        FROM _staged_ga_dedup(p_batch) d;

-- ---- statement 10
SELECT rows_in, rows_out FROM stage_staged($1);

-- ======== run 2 of 4: psi batch, repeating a key, into an empty staged table

-- ---- statement 1
EXISTS (SELECT FROM staged_marker);

-- ---- statement 2
SELECT staged_ensure();

-- ---- statement 3
SELECT source, first_hour, last_hour                                           FROM ingest_batch WHERE id = p_batch;

-- ---- statement 4
v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_psi s WHERE s.page_id = p.id AND s.hour >= p_first
                                       AND s.hour <= p_last));

-- ---- statement 5
v_empty := NOT EXISTS (SELECT FROM staged_psi);

-- ---- statement 6
INSERT INTO "staged_psi" ("hour", "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position")
    SELECT utc_trunc('hour', measured_at), "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position"
    FROM "raw_psi" WHERE batch_id = p_batch
    ORDER BY (page_id::bigint << 32) + (floor(date_part('epoch', measured_at) / 3600)::bigint << 1) + (strategy = 'mobile')::integer;

-- ---- statement 7
SELECT set_config('maintenance_work_mem', '1GB', true);

-- ---- statement 8
WITH src AS MATERIALIZED (
        SELECT DISTINCT ON ("page_id", utc_trunc('hour', measured_at), "strategy") utc_trunc('hour', measured_at) AS hour, *
        FROM "raw_psi" WHERE batch_id = p_batch
        ORDER BY "page_id", utc_trunc('hour', measured_at), "strategy", position DESC
    ), upd AS (
        UPDATE "staged_psi" AS s SET "measured_at" = src."measured_at", "performance_score" = src."performance_score", "lcp_ms" = src."lcp_ms", "fcp_ms" = src."fcp_ms", "inp_ms" = src."inp_ms", "ttfb_ms" = src."ttfb_ms", "cls" = src."cls", "batch_id" = src."batch_id", "position" = src."position"
        FROM src
        WHERE s."page_id" = src."page_id" AND s."hour" = src."hour" AND s."strategy" = src."strategy"
          AND (s.batch_id, s.position) < (src.batch_id, src.position)
        RETURNING s.page_id, s.hour
    ), ins AS (
        INSERT INTO "staged_psi" ("hour", "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position")
        SELECT "hour", "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position"
        FROM src
        WHERE NOT EXISTS (SELECT FROM "staged_psi" s WHERE s."page_id" = src."page_id" AND s."hour" = src."hour" AND s."strategy" = src."strategy")
        RETURNING page_id, hour
    ), changed AS (
        SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
    ), mark AS (
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "hour"), page_id, bit_or(hour_bit("hour"))
    FROM changed GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours
    )
    SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed);

-- ---- statement 9
SELECT d.rows_in, d.rows_out                        FROM _staged_psi_dedup(p_batch) d;

-- ---- statement 10
SELECT rows_in, rows_out FROM stage_staged($1);

-- ======== run 3 of 4: ga batch, late records, over keys staged already

-- ---- statement 1
EXISTS (SELECT FROM staged_marker);

-- ---- statement 2
SELECT staged_ensure();

-- ---- statement 3
SELECT source, first_hour, last_hour                                           FROM ingest_batch WHERE id = p_batch;

-- ---- statement 4
v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_ga s WHERE s.page_id = p.id AND s.hour >= p_first
                                      AND s.hour <= p_last));

-- ---- statement 5
WITH src AS MATERIALIZED (
        SELECT DISTINCT ON ("page_id", hour) *
        FROM "raw_ga" WHERE batch_id = p_batch
        ORDER BY "page_id", hour, position DESC
    ), upd AS (
        UPDATE "staged_ga" AS s SET "users" = src."users", "sessions" = src."sessions", "views" = src."views", "bounces" = src."bounces", "engagement_seconds" = src."engagement_seconds", "batch_id" = src."batch_id", "position" = src."position"
        FROM src
        WHERE s."page_id" = src."page_id" AND s."hour" = src."hour"
          AND (s.batch_id, s.position) < (src.batch_id, src.position)
        RETURNING s.page_id, s.hour
    ), ins AS (
        INSERT INTO "staged_ga" ("hour", "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position")
        SELECT "hour", "page_id", "users", "sessions", "views", "bounces", "engagement_seconds", "batch_id", "position"
        FROM src
        WHERE NOT EXISTS (SELECT FROM "staged_ga" s WHERE s."page_id" = src."page_id" AND s."hour" = src."hour")
        RETURNING page_id, hour
    ), changed AS (
        SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
    ), mark AS (
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "hour"), page_id, bit_or(hour_bit("hour"))
    FROM changed GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours
    )
    SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed);

-- ---- statement 6
SELECT d.rows_in, d.rows_out                        FROM _staged_ga_dedup(p_batch) d;

-- ---- statement 7
SELECT rows_in, rows_out FROM stage_staged($1);

-- ======== run 4 of 4: psi batch, late records, over keys staged already

-- ---- statement 1
EXISTS (SELECT FROM staged_marker);

-- ---- statement 2
SELECT staged_ensure();

-- ---- statement 3
SELECT source, first_hour, last_hour                                           FROM ingest_batch WHERE id = p_batch;

-- ---- statement 4
v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_psi s WHERE s.page_id = p.id AND s.hour >= p_first
                                       AND s.hour <= p_last));

-- ---- statement 5
WITH src AS MATERIALIZED (
        SELECT DISTINCT ON ("page_id", utc_trunc('hour', measured_at), "strategy") utc_trunc('hour', measured_at) AS hour, *
        FROM "raw_psi" WHERE batch_id = p_batch
        ORDER BY "page_id", utc_trunc('hour', measured_at), "strategy", position DESC
    ), upd AS (
        UPDATE "staged_psi" AS s SET "measured_at" = src."measured_at", "performance_score" = src."performance_score", "lcp_ms" = src."lcp_ms", "fcp_ms" = src."fcp_ms", "inp_ms" = src."inp_ms", "ttfb_ms" = src."ttfb_ms", "cls" = src."cls", "batch_id" = src."batch_id", "position" = src."position"
        FROM src
        WHERE s."page_id" = src."page_id" AND s."hour" = src."hour" AND s."strategy" = src."strategy"
          AND (s.batch_id, s.position) < (src.batch_id, src.position)
        RETURNING s.page_id, s.hour
    ), ins AS (
        INSERT INTO "staged_psi" ("hour", "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position")
        SELECT "hour", "page_id", "strategy", "measured_at", "performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls", "batch_id", "position"
        FROM src
        WHERE NOT EXISTS (SELECT FROM "staged_psi" s WHERE s."page_id" = src."page_id" AND s."hour" = src."hour" AND s."strategy" = src."strategy")
        RETURNING page_id, hour
    ), changed AS (
        SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
    ), mark AS (
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "hour"), page_id, bit_or(hour_bit("hour"))
    FROM changed GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours
    )
    SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed);

-- ---- statement 6
SELECT d.rows_in, d.rows_out                        FROM _staged_psi_dedup(p_batch) d;

-- ---- statement 7
SELECT rows_in, rows_out FROM stage_staged($1);
