-- The SQL the staged stage executes on its first-load path, recorded by
-- tests/test_stage_sql.py (which says how); rewrite with
-- METRIFLOW_UPDATE_SQL_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_stage_sql.py
-- Statements in the order they finished (a call after what it ran); utility
-- statements (LOCK, TRUNCATE, ANALYZE, CREATE/ALTER TABLE) are not recorded.

-- ======== run 1 of 2: ga batch, no key repeated, into an empty staged table

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
INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "hour"), page_id, bit_or(hour_bit("hour"))
    FROM "raw_ga" WHERE batch_id = p_batch GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours;

-- ---- statement 9
SELECT _staged_ga_mark_batch(p_batch);

-- ---- statement 10
SELECT _mark_batch_page_dirty(p_source, p_batch);

-- ---- statement 11
SELECT rows_in, rows_out FROM stage_staged($1);

-- ======== run 2 of 2: psi batch, no key repeated, into an empty staged table

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
INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'page', utc_trunc('day', "measured_at"), page_id, bit_or(hour_bit("measured_at"))
    FROM "raw_psi" WHERE batch_id = p_batch GROUP BY 2, 3 ORDER BY 2, 3
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours;

-- ---- statement 9
SELECT _staged_psi_mark_batch(p_batch);

-- ---- statement 10
SELECT _mark_batch_page_dirty(p_source, p_batch);

-- ---- statement 11
SELECT rows_in, rows_out FROM stage_staged($1);
