-- The aggregation stages: staged -> page -> interval -> daily -> monthly -> yearly.
-- CREATE OR REPLACE: when this file changes, a new migration re-applies it.
--
-- Every stage is set-based and idempotent, and recomputes only what is dirty:
-- it takes (DELETE ... RETURNING) its own dirty keys inside the window it is
-- given, recomputes the rows of those keys from the stage before it, upserts
-- them, and marks the next stage's keys dirty, all in one transaction. A
-- failure rolls the keys back; running a stage twice equals running it once.
-- Dirty keys are (page, day) for the page, interval and daily stages,
-- (page, month) for monthly and (page, year) for yearly. Page and interval
-- keys carry an hour mask (pipeline_dirty.hours): the page stage rewrites
-- only the key's dirty hours and the interval stage only the intervals that
-- hold one, so a late batch's cost follows the page-hours it touched.
--
-- Web-vital histograms (docs/metrics.md): sparse log buckets, element
-- bucket << 32 | count. Bucket 0 holds values <= 0; bucket k >= 1 holds
-- [1e-4 * 1.04^(k-1), 1e-4 * 1.04^k), whose representative is within 1.96% of
-- any value in it. Interval and daily histograms may repeat a bucket (counts
-- add); monthly and yearly ones are merged to one element per bucket.

-- ------------------------------------------------------------ reference data
CREATE TABLE IF NOT EXISTS vital (
    name text PRIMARY KEY,
    good_max double precision NOT NULL,   -- good: value <= good_max
    poor_min double precision NOT NULL,   -- poor: value > poor_min
    position smallint NOT NULL UNIQUE
);
INSERT INTO vital (name, good_max, poor_min, position) VALUES
    ('lcp_ms', 2500, 4000, 1),
    ('fcp_ms', 1800, 3000, 2),
    ('inp_ms', 200, 500, 3),
    ('ttfb_ms', 800, 1800, 4),
    ('cls', 0.1, 0.25, 5)
ON CONFLICT (name) DO UPDATE SET good_max = EXCLUDED.good_max, poor_min = EXCLUDED.poor_min;

-- ------------------------------------------------------------ histograms
CREATE OR REPLACE FUNCTION hist_bucket(v double precision) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN v <= 0 THEN 0
                ELSE greatest(1, floor(ln(v / 1e-4) / ln(1.04))::integer + 1) END
$$;

CREATE OR REPLACE FUNCTION hist_value(bucket integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- 2lu/(l+u) of the bucket's bounds: the same relative error at both ends.
    SELECT CASE WHEN bucket <= 0 THEN 0
                ELSE 2 * 1e-4 * power(1.04, bucket) / (1 + 1.04) END
$$;

CREATE OR REPLACE FUNCTION hist_merge(h bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg((b << 32) | c ORDER BY b)
    FROM (SELECT e >> 32 AS b, sum(e & 4294967295)::bigint AS c
          FROM unnest(h) AS e GROUP BY 1) AS merged
$$;

CREATE OR REPLACE AGGREGATE hist_cat_agg(bigint[]) (
    SFUNC = array_cat, STYPE = bigint[]
);

CREATE OR REPLACE AGGREGATE hist_merge_agg(bigint[]) (
    SFUNC = array_cat, STYPE = bigint[], FINALFUNC = hist_merge
);

-- Nearest-rank percentile (p in (0, 1]) of a histogram, NULL when empty.
CREATE OR REPLACE FUNCTION hist_percentile(h bigint[], p double precision)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH buckets AS (
        SELECT e >> 32 AS b, sum(e & 4294967295) AS c FROM unnest(h) AS e GROUP BY 1
    ), running AS (
        SELECT b, sum(c) OVER (ORDER BY b) AS upto, sum(c) OVER () AS total FROM buckets
    )
    SELECT hist_value(b::integer) FROM running
    WHERE upto >= ceil(p * total) ORDER BY b LIMIT 1
$$;

-- ------------------------------------------------------------ helpers
-- Both are built from immutable functions only (date_trunc(text, timestamptz,
-- text) and timestamptz + interval are merely stable), so the planner inlines
-- them instead of calling a SQL function per row.
CREATE OR REPLACE FUNCTION utc_trunc(unit text, ts timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc(unit, ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Hour masks of dirty keys (pipeline_dirty.hours, bit n = hour n of the UTC
-- day): the bit of ts's hour. _fill_stage_ranges() turns masks into ranges.
CREATE OR REPLACE FUNCTION hour_bit(ts timestamptz) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT 1 << date_part('hour', ts AT TIME ZONE 'UTC')::integer
$$;

DROP FUNCTION IF EXISTS interval_bits(timestamptz, integer);

-- The start of the interval of `hours` hours (a divisor of 24) holding ts.
CREATE OR REPLACE FUNCTION interval_start(ts timestamptz, hours integer) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_bin(make_interval(hours => hours), ts AT TIME ZONE 'UTC',
                    timestamp '2000-01-01') AT TIME ZONE 'UTC'
$$;

-- Every stage procedure runs with jit off (compiling its large expressions
-- took ~0.45 s per window, more than the work of a late batch's window) and
-- with work_mem large enough to sort and hash a month window in memory.

-- ------------------------------------------------------------ staged
-- The staged tables are unlogged (schema 0007): a crash empties them and
-- their marker. The staged and page stages call staged_ensure() first: when
-- the marker is gone it rebuilds both tables from raw, every batch the ledger
-- says was staged, last record per natural key by (batch, position), which is
-- exactly what they held, so nothing downstream is marked dirty. Returns
-- whether it rebuilt.
CREATE OR REPLACE FUNCTION staged_ensure() RETURNS boolean
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
BEGIN
    IF EXISTS (SELECT FROM staged_marker) THEN
        RETURN false;
    END IF;
    -- One rebuild at a time (an advisory lock, class 0x4D46 = 19782: table locks
    -- here would deadlock with the marker read above in another session).
    PERFORM pg_advisory_xact_lock(19782, 0);
    IF EXISTS (SELECT FROM staged_marker) THEN
        RETURN false;  -- another session rebuilt them while this one waited
    END IF;
    LOCK TABLE staged_ga, staged_psi IN ACCESS EXCLUSIVE MODE;
    RAISE NOTICE 'staged tables were emptied (a crash): rebuilding them from raw';
    TRUNCATE staged_ga, staged_psi;
    CREATE TEMP TABLE _staged_batches ON COMMIT DROP AS
        SELECT batch_id FROM pipeline_ledger WHERE stage = 'staged' AND status = 'done';
    INSERT INTO staged_ga (hour, page_id, users, sessions, views, bounces,
                           engagement_seconds, batch_id, position)
    SELECT DISTINCT ON (page_id, hour)
           hour, page_id, users, sessions, views, bounces, engagement_seconds, batch_id, position
    FROM raw_ga WHERE batch_id IN (SELECT batch_id FROM _staged_batches)
    ORDER BY page_id, hour, batch_id DESC, position DESC;
    INSERT INTO staged_psi (hour, page_id, strategy, measured_at, performance_score,
                            lcp_ms, fcp_ms, inp_ms, ttfb_ms, cls, batch_id, position)
    SELECT DISTINCT ON (page_id, utc_trunc('hour', measured_at), strategy)
           utc_trunc('hour', measured_at), page_id, strategy, measured_at, performance_score,
           lcp_ms, fcp_ms, inp_ms, ttfb_ms, cls, batch_id, position
    FROM raw_psi WHERE batch_id IN (SELECT batch_id FROM _staged_batches)
    ORDER BY page_id, utc_trunc('hour', measured_at), strategy, batch_id DESC, position DESC;
    INSERT INTO staged_marker DEFAULT VALUES;
    RETURN true;
END
$fn$;

-- One ingest batch: the last record of each natural key in the batch
-- (highest position), written where it is newer than what staged holds
-- (batch, then position), so batches may be staged in any order. Marks the
-- (page, day) of every key it changed dirty for the page stage, with the
-- changed hours in the key's hour mask.
--
-- Existing keys are updated and new keys inserted by an anti-join, in one
-- statement: cheaper than INSERT ... ON CONFLICT, whose speculative insertion
-- costs an extra index probe per row on a load that is mostly new keys. The
-- staged stages of different batches are serialised by a table lock (reads
-- of staged are not blocked), so no key appears between probe and insert.
--
-- Fast path: when staged holds no key in the batch's hours (a first load, or
-- data for hours not seen before), every key of the batch is new: its raw
-- rows are inserted as they are, without sorting the batch for DISTINCT ON,
-- and the primary key proves that the batch repeats no key. If it does (a
-- unique violation), the insert is rolled back to its savepoint and the
-- general path below deduplicates. At 13M records a batch skips two
-- materialisations of itself. The rows still go in key order: the page stage
-- reads staged by (page, day), and rows in file order (hour by hour) would
-- put each page-day on 24 heap pages instead of one.
CREATE OR REPLACE FUNCTION _staged_new_keys_only(p_source text, p_first timestamptz,
                                                 p_last timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_overlap boolean;
BEGIN
    IF p_first IS NULL THEN
        RETURN false;
    END IF;
    -- An hour of margin on both sides: the bounds are hours of the batch's records.
    EXECUTE format(
        'SELECT EXISTS (SELECT FROM page p WHERE EXISTS ('
        '  SELECT FROM %I s WHERE s.page_id = p.id AND s.hour >= $1 AND s.hour <= $2))',
        'staged_' || p_source)
    INTO v_overlap USING p_first - interval '1 hour', p_last + interval '1 hour';
    RETURN NOT v_overlap;
END
$fn$;

-- The fast path's dirty marks: every (page, day) of the batch's records, with
-- their hours, for the page stage (all of the batch's keys are new).
CREATE OR REPLACE FUNCTION _mark_batch_page_dirty(p_source text, p_batch bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    v_time text := CASE p_source WHEN 'ga' THEN 'hour' ELSE 'measured_at' END;
BEGIN
    EXECUTE format(
        'INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours) '
        'SELECT ''page'', utc_trunc(''day'', %1$I), page_id, bit_or(hour_bit(%1$I)) '
        'FROM %2$I WHERE batch_id = $1 GROUP BY 2, 3 ORDER BY 2, 3 '
        'ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours '
        'WHERE d.hours <> d.hours | EXCLUDED.hours',
        v_time, 'raw_' || p_source)
    USING p_batch;
END
$fn$;

-- The fast path's insert: every raw row of the batch, in key order. Into an
-- empty staged table (the first load) the rows go without the primary key,
-- which is built afterwards in one sort of rows already in key order: 13M
-- PSI rows 34 -> 27 s. That takes an ACCESS EXCLUSIVE lock on the table until
-- commit; the page stage locks both staged tables before it takes any dirty
-- key, so it waits here without holding a row this stage's dirty marks need.
-- A repeated key raises unique_violation, from the insert or the index build.
CREATE OR REPLACE FUNCTION _staged_insert_batch(p_source text, p_batch bigint) RETURNS bigint
LANGUAGE plpgsql AS $fn$
DECLARE
    v_table text := 'staged_' || p_source;
    v_empty boolean;
    v_rows bigint;
BEGIN
    EXECUTE format('SELECT NOT EXISTS (SELECT FROM %I)', v_table) INTO v_empty;
    IF v_empty THEN
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', v_table);
        EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', v_table, v_table || '_pkey');
    END IF;
    -- Key order as one bigint: page, then hour (and strategy), which the sort
    -- compares in one step; by the columns, nearly every comparison ties on
    -- the page and goes on to the others (13M PSI rows: 14.1 -> 7.7 s).
    IF p_source = 'ga' THEN
        INSERT INTO staged_ga (hour, page_id, users, sessions, views, bounces,
                               engagement_seconds, batch_id, position)
        SELECT hour, page_id, users, sessions, views, bounces, engagement_seconds,
               batch_id, position
        FROM raw_ga WHERE batch_id = p_batch
        ORDER BY (page_id::bigint << 32) + floor(date_part('epoch', hour) / 3600)::bigint;
    ELSE
        INSERT INTO staged_psi (hour, page_id, strategy, measured_at, performance_score,
                                lcp_ms, fcp_ms, inp_ms, ttfb_ms, cls, batch_id, position)
        SELECT utc_trunc('hour', measured_at), page_id, strategy, measured_at,
               performance_score, lcp_ms, fcp_ms, inp_ms, ttfb_ms, cls, batch_id, position
        FROM raw_psi WHERE batch_id = p_batch
        ORDER BY (page_id::bigint << 32)
                 + (floor(date_part('epoch', measured_at) / 3600)::bigint << 1)
                 + (strategy = 'mobile')::integer;
    END IF;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    IF v_empty THEN
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (%s)', v_table,
                       v_table || '_pkey',
                       CASE p_source WHEN 'ga' THEN 'page_id, hour'
                                     ELSE 'page_id, hour, strategy' END);
    END IF;
    PERFORM _mark_batch_page_dirty(p_source, p_batch);
    RETURN v_rows;
END
$fn$;

CREATE OR REPLACE FUNCTION stage_staged(p_batch bigint, OUT rows_in bigint, OUT rows_out bigint)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_source text;
    v_first timestamptz;
    v_last timestamptz;
BEGIN
    PERFORM staged_ensure();
    SELECT source, first_hour, last_hour INTO STRICT v_source, v_first, v_last
    FROM ingest_batch WHERE id = p_batch;
    EXECUTE format('LOCK TABLE %I IN SHARE ROW EXCLUSIVE MODE', 'staged_' || v_source);
    IF _staged_new_keys_only(v_source, v_first, v_last) THEN
        BEGIN
            rows_out := _staged_insert_batch(v_source, p_batch);
            rows_in := rows_out;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- the batch repeats a key: deduplicated below
        END;
    END IF;
    IF v_source = 'ga' THEN
        WITH src AS MATERIALIZED (
            SELECT DISTINCT ON (page_id, hour) *
            FROM raw_ga WHERE batch_id = p_batch
            ORDER BY page_id, hour, position DESC
        ), upd AS (
            UPDATE staged_ga AS s SET
                users = src.users, sessions = src.sessions, views = src.views,
                bounces = src.bounces, engagement_seconds = src.engagement_seconds,
                batch_id = src.batch_id, position = src.position
            FROM src
            WHERE s.page_id = src.page_id AND s.hour = src.hour
              AND (s.batch_id, s.position) < (src.batch_id, src.position)
            RETURNING s.page_id, s.hour
        ), ins AS (
            INSERT INTO staged_ga (hour, page_id, users, sessions, views, bounces,
                                   engagement_seconds, batch_id, position)
            SELECT hour, page_id, users, sessions, views, bounces, engagement_seconds,
                   batch_id, position
            FROM src
            WHERE NOT EXISTS (SELECT FROM staged_ga s
                              WHERE s.page_id = src.page_id AND s.hour = src.hour)
            RETURNING page_id, hour
        ), changed AS (
            SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
        ), mark AS (
            INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
            SELECT 'page', utc_trunc('day', hour), page_id, bit_or(hour_bit(hour))
            FROM changed GROUP BY 2, 3 ORDER BY 2, 3
            ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
            WHERE d.hours <> d.hours | EXCLUDED.hours
        )
        SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed) INTO rows_in, rows_out;
    ELSE
        WITH src AS MATERIALIZED (
            SELECT DISTINCT ON (page_id, utc_trunc('hour', measured_at), strategy)
                   utc_trunc('hour', measured_at) AS hour, *
            FROM raw_psi WHERE batch_id = p_batch
            ORDER BY page_id, utc_trunc('hour', measured_at), strategy, position DESC
        ), upd AS (
            UPDATE staged_psi AS s SET
                measured_at = src.measured_at, performance_score = src.performance_score,
                lcp_ms = src.lcp_ms, fcp_ms = src.fcp_ms, inp_ms = src.inp_ms,
                ttfb_ms = src.ttfb_ms, cls = src.cls,
                batch_id = src.batch_id, position = src.position
            FROM src
            WHERE s.page_id = src.page_id AND s.hour = src.hour AND s.strategy = src.strategy
              AND (s.batch_id, s.position) < (src.batch_id, src.position)
            RETURNING s.page_id, s.hour
        ), ins AS (
            INSERT INTO staged_psi (hour, page_id, strategy, measured_at, performance_score,
                                    lcp_ms, fcp_ms, inp_ms, ttfb_ms, cls, batch_id, position)
            SELECT hour, page_id, strategy, measured_at, performance_score, lcp_ms, fcp_ms,
                   inp_ms, ttfb_ms, cls, batch_id, position
            FROM src
            WHERE NOT EXISTS (SELECT FROM staged_psi s
                              WHERE s.page_id = src.page_id AND s.hour = src.hour
                                AND s.strategy = src.strategy)
            RETURNING page_id, hour
        ), changed AS (
            SELECT page_id, hour FROM upd UNION ALL SELECT page_id, hour FROM ins
        ), mark AS (
            INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
            SELECT 'page', utc_trunc('day', hour), page_id, bit_or(hour_bit(hour))
            FROM changed GROUP BY 2, 3 ORDER BY 2, 3
            ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
            WHERE d.hours <> d.hours | EXCLUDED.hours
        )
        SELECT (SELECT count(*) FROM src), (SELECT count(*) FROM changed) INTO rows_in, rows_out;
    END IF;
END
$fn$;

-- ------------------------------------------------------------ page
-- The dirty keys of a page or interval window (_stage_keys: page, day, hour
-- mask) as ranges of page-hours to read (_stage_ranges): a whole day for a key
-- whose every hour is dirty (a first load, a rebuild), else one range per
-- dirty unit of p_unit hours (an hour for the page stage, an interval for the
-- interval stage). Each range is one index range scan, so a late batch that
-- dirtied one hour of a page-day reads that hour, not the day's 24 rows.
CREATE OR REPLACE FUNCTION _fill_stage_ranges(p_unit integer) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _stage_ranges (page_id integer, lo timestamptz, hi timestamptz)
        ON COMMIT DROP;
    TRUNCATE _stage_ranges;
    INSERT INTO _stage_ranges
    SELECT page_id, day, day + interval '1 day' FROM _stage_keys WHERE hours = 16777215
    UNION ALL
    SELECT k.page_id, k.day + make_interval(hours => u * p_unit),
           k.day + make_interval(hours => (u + 1) * p_unit)
    FROM _stage_keys k CROSS JOIN generate_series(0, 24 / p_unit - 1) AS u
    WHERE k.hours <> 16777215 AND k.hours & (((1 << p_unit) - 1) << (u * p_unit)) <> 0;
    ANALYZE _stage_ranges;
END
$fn$;

-- Dirty (page, day) keys in [p_from, p_to): GA and PSI of the key's dirty
-- hours (its hour mask) merged per (page, hour) as a full outer join, PSI
-- pivoted by strategy. Marks the same (page, day, hours) dirty for interval.
--
-- A window that holds no page-hour yet (a first load) is read whole for each
-- page of its keys: every staged row in it is dirty, since the staged stage marks its
-- rows in the transaction that writes them, and a window that was ever paged
-- holds rows. Each page's GA and PSI rows then come in hour order from one
-- index range scan each, with no key join and no sort, and go in with a plain
-- INSERT: no speculative insertion or conflict probe per row (the window is
-- this worker's, by its advisory lock). A window that holds rows reads the
-- ranges of its keys' dirty hours and upserts.
CREATE OR REPLACE FUNCTION stage_page(
    p_from timestamptz, p_to timestamptz, OUT rows_in bigint, OUT rows_out bigint
)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_columns text := 'users, sessions, views, bounces, '
        'engagement_seconds, mobile_score, mobile_lcp_ms, mobile_fcp_ms, mobile_inp_ms, '
        'mobile_ttfb_ms, mobile_cls, desktop_score, desktop_lcp_ms, desktop_fcp_ms, '
        'desktop_inp_ms, desktop_ttfb_ms, desktop_cls';
    -- GA's columns, then PSI's pivoted (m_: mobile, d_: desktop), as merged below.
    v_values text := 'ga.users, ga.sessions, ga.views, ga.bounces, ga.engagement_seconds, '
        'psi.m_score, psi.m_lcp, psi.m_fcp, psi.m_inp, psi.m_ttfb, psi.m_cls, '
        'psi.d_score, psi.d_lcp, psi.d_fcp, psi.d_inp, psi.d_ttfb, psi.d_cls';
    v_pivot text;
    v_conflict text;
BEGIN
    PERFORM staged_ensure();
    -- Both staged tables before any dirty key: a first load holds its staged
    -- table exclusively and marks keys at its end (_staged_insert_batch).
    LOCK TABLE staged_ga, staged_psi IN ACCESS SHARE MODE;
    -- The keys go through a temporary table: the planner then sizes them and
    -- hash-joins, where a DELETE ... RETURNING CTE would be guessed at one row.
    CREATE TEMP TABLE IF NOT EXISTS _stage_keys (page_id integer, day timestamptz, hours integer)
        ON COMMIT DROP;
    TRUNCATE _stage_keys;
    WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = 'page' AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start AS day, hours
    )
    INSERT INTO _stage_keys SELECT page_id, day, hours FROM keys;
    GET DIAGNOSTICS rows_in = ROW_COUNT;
    ANALYZE _stage_keys;

    SELECT string_agg(format('max(p.%1$I) FILTER (WHERE p.strategy = %2$L) AS %3$s_%4$s',
                             c.col, s.strategy, left(s.strategy, 1), c.alias), ', '
                      ORDER BY s.ord, c.ord)
      INTO v_pivot
      FROM (VALUES (1, 'mobile'), (2, 'desktop')) AS s (ord, strategy)
     CROSS JOIN (VALUES (1, 'performance_score', 'score'), (2, 'lcp_ms', 'lcp'),
                        (3, 'fcp_ms', 'fcp'), (4, 'inp_ms', 'inp'), (5, 'ttfb_ms', 'ttfb'),
                        (6, 'cls', 'cls')) AS c (ord, col, alias);

    IF NOT EXISTS (SELECT FROM page_hour WHERE hour >= p_from AND hour < p_to) THEN
        EXECUTE format($sql$
        INSERT INTO page_hour (page_id, site_id, hour, %1$s)
        SELECT k.page_id, pg.site_id, m.*
        FROM (SELECT DISTINCT page_id FROM _stage_keys ORDER BY page_id) AS k
        CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg
        CROSS JOIN LATERAL (
            SELECT coalesce(ga.hour, psi.hour) AS hour, %2$s
            FROM (SELECT * FROM staged_ga g
                  WHERE g.page_id = k.page_id AND g.hour >= $1 AND g.hour < $2) AS ga
            FULL JOIN (SELECT p.hour, %3$s FROM staged_psi p
                       WHERE p.page_id = k.page_id AND p.hour >= $1 AND p.hour < $2
                       GROUP BY p.hour) AS psi ON psi.hour = ga.hour
        ) AS m (hour)
        ORDER BY k.page_id, m.hour
        $sql$, v_columns, v_values, v_pivot) USING p_from, p_to;
    ELSE
        PERFORM _fill_stage_ranges(1);
        SELECT 'ON CONFLICT (hour, page_id) DO UPDATE SET '
               || string_agg(format('%1$I = EXCLUDED.%1$I', attname), ', ' ORDER BY attnum)
          INTO v_conflict
          FROM pg_attribute
         WHERE attrelid = 'page_hour'::regclass AND attnum > 0 AND NOT attisdropped
           AND attname NOT IN ('hour', 'page_id', 'site_id');
        EXECUTE format($sql$
        WITH ga AS (
            SELECT g.* FROM staged_ga g
            JOIN _stage_ranges r ON r.page_id = g.page_id AND g.hour >= r.lo AND g.hour < r.hi
        ), psi AS (
            SELECT p.page_id, p.hour, %3$s
            FROM staged_psi p
            JOIN _stage_ranges r ON r.page_id = p.page_id AND p.hour >= r.lo AND p.hour < r.hi
            GROUP BY p.page_id, p.hour
        ), merged AS (
            SELECT coalesce(ga.hour, psi.hour) AS hour,
                   coalesce(ga.page_id, psi.page_id) AS page_id, %2$s
            FROM ga FULL OUTER JOIN psi ON psi.page_id = ga.page_id AND psi.hour = ga.hour
        )
        INSERT INTO page_hour AS t (hour, page_id, site_id, %1$s)
        SELECT m.hour, m.page_id, pg.site_id, m.users, m.sessions, m.views, m.bounces,
               m.engagement_seconds, m.m_score, m.m_lcp, m.m_fcp, m.m_inp, m.m_ttfb, m.m_cls,
               m.d_score, m.d_lcp, m.d_fcp, m.d_inp, m.d_ttfb, m.d_cls
        FROM merged m JOIN page pg ON pg.id = m.page_id
        ORDER BY m.page_id, m.hour
        %4$s
        $sql$, v_columns, v_values, v_pivot, v_conflict);
    END IF;
    GET DIAGNOSTICS rows_out = ROW_COUNT;

    INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
    SELECT 'interval', day, page_id, hours FROM _stage_keys ORDER BY day, page_id
    ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
    WHERE d.hours <> d.hours | EXCLUDED.hours;
END
$fn$;

-- ------------------------------------------------------------ exact float sums
-- The sum of a float column over a group, the same bits whatever order the
-- rows are read in. Each value's whole part and its fraction, rounded to a
-- millionth (a microsecond of engagement, a millionth of a score point), are
-- summed apart as integer-valued doubles: exact in any order while the whole
-- parts stay below 2^53 (9e15 s in one stored row), and no finite value can
-- overflow them. Each row's contribution depends on its own value only, so a
-- coarser level computed from stored sums is as deterministic.
-- A cast of each value to numeric did the same at ~3.5x the cost: it formats
-- and parses every double (3M values: 2.7 s against 0.8 s; a fifth of the
-- interval stage).
CREATE OR REPLACE FUNCTION _exact_sum_sql(p_column text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format('coalesce(sum(trunc(%1$s)) + sum(round((%1$s - trunc(%1$s)) * 1e6)) / 1e6, 0)',
                  p_column)
$$;

-- ------------------------------------------------------------ interval
-- The SELECT list of one aggregate row from page_hour rows (alias a): sums,
-- counts, and per strategy and vital n, good, poor and the histogram.
CREATE OR REPLACE FUNCTION _interval_select_list() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT 'count(a.users) AS traffic_hours, coalesce(sum(a.users), 0) AS users, '
        || 'coalesce(sum(a.sessions), 0) AS sessions, coalesce(sum(a.views), 0) AS views, '
        || 'coalesce(sum(a.bounces), 0) AS bounces, '
        || _exact_sum_sql('a.engagement_seconds') || ' AS engagement_seconds, '
        || string_agg(per_strategy, ', ' ORDER BY s.ord)
    FROM (
        SELECT s.ord,
               format('count(a.%1$s_score) AS %1$s_samples, %2$s AS %1$s_score_sum, ',
                      s.name, _exact_sum_sql(format('a.%s_score', s.name)))
               || string_agg(format(
                      'count(a.%1$s_%2$s) AS %1$s_%2$s_n, '
                      'count(*) FILTER (WHERE a.%1$s_%2$s <= %3$s) AS %1$s_%2$s_good, '
                      'count(*) FILTER (WHERE a.%1$s_%2$s > %4$s) AS %1$s_%2$s_poor, '
                      'array_agg((hist_bucket(a.%1$s_%2$s)::bigint << 32) | 1) '
                      'FILTER (WHERE a.%1$s_%2$s IS NOT NULL) AS %1$s_%2$s_hist',
                      s.name, v.name, v.good_max, v.poor_min), ', ' ORDER BY v.position)
               AS per_strategy
        FROM (VALUES (1, 'mobile'), (2, 'desktop')) AS s (ord, name)
        CROSS JOIN vital v
        GROUP BY s.ord, s.name
    ) s
$$;

-- The column list of the aggregate tables after the key (same for all four).
CREATE OR REPLACE FUNCTION _aggregate_columns() RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(attname::text ORDER BY attnum)
    FROM pg_attribute
    WHERE attrelid = 'agg_interval'::regclass AND attnum > 0 AND NOT attisdropped
      AND attname NOT IN ('period_start', 'page_id', 'site_id')
$$;

-- Whether an aggregate table holds a row in [p_from, p_to).
CREATE OR REPLACE FUNCTION _window_filled(p_target text, p_from timestamptz, p_to timestamptz)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    v_filled boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %I WHERE period_start >= $1 AND period_start < $2)',
                   p_target)
    INTO v_filled USING p_from, p_to;
    RETURN v_filled;
END
$fn$;

-- The INSERT of an aggregate stage's rows: an upsert into a window that holds
-- rows already, a plain INSERT into one that holds none (a first load: no
-- speculative insertion, no conflict probe per row).
DROP FUNCTION IF EXISTS _upsert_sql(text, text);
DROP FUNCTION IF EXISTS _upsert_sql(text, text, timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION _upsert_sql(p_target text, p_select text, p_filled boolean)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format(
        'INSERT INTO %I AS t (period_start, page_id, site_id, %s) %s %s',
        p_target,
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(_aggregate_columns()) c),
        p_select,
        CASE WHEN p_filled THEN
            'ON CONFLICT (period_start, page_id) DO UPDATE SET '
            || (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ')
                FROM unnest(_aggregate_columns()) c)
        ELSE '' END)
$$;

-- The SELECT of a first load into an empty aggregate window: every row of the
-- finer table in [p_from, p_to) is dirty (a stage marks the next one's keys
-- in the transaction that writes its rows, and a window that was ever
-- aggregated holds rows), so the window is read whole for each page of its
-- keys (p_keys), each page's rows in time order from one index range scan,
-- with no join against the keys' periods and no sort of the window.
-- p_period is the expression of a row's period over the finer table's rows
-- (alias a), p_aggregates the aggregates of the period's row.
-- The window's bounds are the statement's parameters $1 and $2.
DROP FUNCTION IF EXISTS _first_load_select(text, text, text, text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _first_load_select(text, text, text, text, text, timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION _first_load_select(p_keys text, p_source text, p_time text,
                                              p_period text, p_aggregates text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        'SELECT m.* FROM (SELECT DISTINCT page_id FROM %1$I ORDER BY page_id) AS k '
        'CROSS JOIN LATERAL (SELECT site_id FROM page WHERE id = k.page_id) AS pg '
        'CROSS JOIN LATERAL ('
        '  SELECT %4$s AS period_start, k.page_id, pg.site_id, %5$s FROM %2$I a'
        '  WHERE a.page_id = k.page_id AND a.%3$I >= $1 AND a.%3$I < $2 GROUP BY 1'
        ') AS m ORDER BY m.page_id, m.period_start',
        p_keys, p_source, p_time, p_period, p_aggregates)
$$;

-- Dirty (page, day) keys in [p_from, p_to), each with its dirty hours: the
-- intervals of p_hours hours holding one of them are recomputed from
-- page_hour. Marks the (page, day) dirty for the daily stage.
CREATE OR REPLACE FUNCTION stage_interval(
    p_from timestamptz, p_to timestamptz, p_hours integer,
    OUT rows_in bigint, OUT rows_out bigint
)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_filled boolean;
    v_select text;
BEGIN
    IF p_hours NOT IN (1, 2, 3, 4, 6, 8, 12) THEN
        RAISE EXCEPTION 'interval length must divide a day: % h', p_hours USING ERRCODE = '22023';
    END IF;
    CREATE TEMP TABLE IF NOT EXISTS _stage_keys (page_id integer, day timestamptz, hours integer)
        ON COMMIT DROP;
    TRUNCATE _stage_keys;
    WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = 'interval' AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start AS day, hours
    )
    INSERT INTO _stage_keys SELECT page_id, day, hours FROM keys;
    GET DIAGNOSTICS rows_in = ROW_COUNT;
    ANALYZE _stage_keys;

    v_filled := _window_filled('agg_interval', p_from, p_to);
    IF v_filled THEN
        PERFORM _fill_stage_ranges(p_hours);
        v_select := format(
            'SELECT interval_start(a.hour, %s), a.page_id, min(a.site_id), %s '
            'FROM page_hour a JOIN _stage_ranges r ON r.page_id = a.page_id '
            '  AND a.hour >= r.lo AND a.hour < r.hi '
            'GROUP BY 1, 2 ORDER BY 2, 1', p_hours, _interval_select_list());
    ELSE
        v_select := _first_load_select(
            '_stage_keys', 'page_hour', 'hour', format('interval_start(a.hour, %s)', p_hours),
            _interval_select_list());
    END IF;
    EXECUTE _upsert_sql('agg_interval', v_select, v_filled) USING p_from, p_to;
    GET DIAGNOSTICS rows_out = ROW_COUNT;

    INSERT INTO pipeline_dirty (stage, period_start, page_id)
    SELECT 'daily', day, page_id FROM _stage_keys ORDER BY day, page_id
    ON CONFLICT DO NOTHING;
END
$fn$;

-- ------------------------------------------------------------ daily, monthly, yearly
-- The aggregates of a roll-up row from finer aggregate rows (alias a), each
-- column combined by its kind; p_hist combines the histograms. Order-
-- independent, so that a rerun gives the same bits whatever order the rows
-- are read in, without a sort per group and aggregate: float sums are exact
-- (_exact_sum_sql), histograms are multisets.
CREATE OR REPLACE FUNCTION _rollup_aggregates(p_hist text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT string_agg(
               CASE WHEN c LIKE '%\_hist' THEN format('%s(a.%I)', p_hist, c)
                    WHEN c IN ('engagement_seconds', 'mobile_score_sum', 'desktop_score_sum')
                        THEN _exact_sum_sql(format('a.%I', c))
                    ELSE format('sum(a.%I)', c) END, ', ')
    FROM unnest(_aggregate_columns()) c
$$;

-- One roll-up stage: dirty (page, period) keys of p_stage in [p_from, p_to),
-- each recomputed from the finer table's rows inside the period; marks the
-- next stage's (page, coarser period) dirty.
CREATE OR REPLACE FUNCTION _stage_rollup(
    p_stage text, p_from timestamptz, p_to timestamptz,
    OUT rows_in bigint, OUT rows_out bigint
)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_source text;
    v_target text;
    v_unit text;          -- the target's period
    v_next text;          -- the next stage, or NULL
    v_next_unit text;
    v_hist text;          -- how histograms combine at this level
    v_aggregates text;
    v_filled boolean;
BEGIN
    CASE p_stage
        WHEN 'daily' THEN
            v_source := 'agg_interval'; v_target := 'agg_daily'; v_unit := 'day';
            v_next := 'monthly'; v_next_unit := 'month'; v_hist := 'hist_cat_agg';
        WHEN 'monthly' THEN
            v_source := 'agg_daily'; v_target := 'agg_monthly'; v_unit := 'month';
            v_next := 'yearly'; v_next_unit := 'year'; v_hist := 'hist_merge_agg';
        WHEN 'yearly' THEN
            v_source := 'agg_monthly'; v_target := 'agg_yearly'; v_unit := 'year';
            v_next := NULL; v_hist := 'hist_merge_agg';
        ELSE
            RAISE EXCEPTION 'not a roll-up stage: %', p_stage USING ERRCODE = '22023';
    END CASE;

    CREATE TEMP TABLE IF NOT EXISTS _rollup_keys (page_id integer, period timestamptz)
        ON COMMIT DROP;
    TRUNCATE _rollup_keys;
    WITH keys AS (
        DELETE FROM pipeline_dirty
        WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to
        RETURNING page_id, period_start
    )
    INSERT INTO _rollup_keys SELECT page_id, period_start FROM keys;
    GET DIAGNOSTICS rows_in = ROW_COUNT;
    ANALYZE _rollup_keys;

    v_aggregates := _rollup_aggregates(v_hist);
    v_filled := _window_filled(v_target, p_from, p_to);
    IF v_filled THEN
        -- The window's bounds on the finer table as well: without them, and
        -- without statistics on it, the planner may read the whole table.
        EXECUTE _upsert_sql(v_target, format(
            'SELECT k.period, a.page_id, min(a.site_id), %s FROM %I a '
            'JOIN _rollup_keys k ON k.page_id = a.page_id '
            '  AND a.period_start >= k.period AND a.period_start < k.period + %L::interval '
            'WHERE a.period_start >= $1 AND a.period_start < $2 '
            'GROUP BY k.period, a.page_id ORDER BY a.page_id, k.period',
            v_aggregates, v_source, '1 ' || v_unit), true) USING p_from, p_to;
    ELSE
        EXECUTE _upsert_sql(v_target, _first_load_select(
            '_rollup_keys', v_source, 'period_start', format('utc_trunc(%L, a.period_start)', v_unit),
            v_aggregates), false) USING p_from, p_to;
    END IF;
    GET DIAGNOSTICS rows_out = ROW_COUNT;

    IF v_next IS NOT NULL THEN
        INSERT INTO pipeline_dirty (stage, period_start, page_id)
        SELECT DISTINCT v_next, utc_trunc(v_next_unit, period), page_id FROM _rollup_keys
        ORDER BY 2, 3
        ON CONFLICT DO NOTHING;
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION stage_monthly(p_from timestamptz, p_to timestamptz,
                                         OUT rows_in bigint, OUT rows_out bigint)
LANGUAGE sql AS $$ SELECT * FROM _stage_rollup('monthly', p_from, p_to) $$;

CREATE OR REPLACE FUNCTION stage_yearly(p_from timestamptz, p_to timestamptz,
                                        OUT rows_in bigint, OUT rows_out bigint)
LANGUAGE sql AS $$ SELECT * FROM _stage_rollup('yearly', p_from, p_to) $$;

-- ------------------------------------------------------------ all pages per site and day
-- Recomputes agg_site_daily for the site-days that p_site_days (a query
-- returning period_start, site_id) names, from agg_daily rows in
-- [p_from, p_to): the bounds let the planner read only the window's days.
CREATE OR REPLACE FUNCTION site_daily_refresh(
    p_site_days text,
    p_from timestamptz DEFAULT '-infinity',
    p_to timestamptz DEFAULT 'infinity'
) RETURNS bigint
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_cols text[] := _aggregate_columns();
    v_count bigint;
BEGIN
    EXECUTE format(
        'INSERT INTO agg_site_daily AS t (period_start, site_id, %s) '
        'SELECT a.period_start, a.site_id, %s FROM agg_daily a '
        'JOIN (%s) s (period_start, site_id) '
        '  ON s.period_start = a.period_start AND s.site_id = a.site_id '
        'WHERE a.period_start >= $1 AND a.period_start < $2 '
        'GROUP BY a.period_start, a.site_id ORDER BY a.period_start, a.site_id '
        'ON CONFLICT (period_start, site_id) DO UPDATE SET %s',
        (SELECT string_agg(format('%I', c), ', ') FROM unnest(v_cols) c),
        _rollup_aggregates('hist_merge_agg'),
        p_site_days,
        (SELECT string_agg(format('%1$I = EXCLUDED.%1$I', c), ', ') FROM unnest(v_cols) c))
    USING p_from, p_to;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$fn$;

-- The daily stage: pages' days, then the site-days they belong to.
CREATE OR REPLACE FUNCTION stage_daily(p_from timestamptz, p_to timestamptz,
                                       OUT rows_in bigint, OUT rows_out bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    SELECT r.rows_in, r.rows_out INTO rows_in, rows_out FROM _stage_rollup('daily', p_from, p_to) r;
    PERFORM site_daily_refresh(
        'SELECT DISTINCT k.period, p.site_id FROM _rollup_keys k JOIN page p ON p.id = k.page_id',
        p_from, p_to);
END
$fn$;
