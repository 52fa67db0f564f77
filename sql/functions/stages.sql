-- The aggregation stages: staged -> page -> interval -> daily -> monthly -> yearly.
-- CREATE OR REPLACE: when this file changes, a new migration re-applies it.
--
-- Every stage is set-based and idempotent, and works only on what changed,
-- all in one transaction with the ledger: a failure rolls its input back;
-- running a stage twice equals running it once. Two kinds of input:
--   * dirty keys (pipeline_dirty): periods to recompute from the stage
--     before, marked by first loads and rebuilds. Keys are (page, day) for
--     the page, interval and daily stages, (page, month) for monthly and
--     (page, year) for yearly. Page and interval keys carry an hour mask
--     (pipeline_dirty.hours): the page stage rewrites only the key's dirty
--     hours and the interval stage only the intervals that hold one.
--   * deltas (pipeline_delta, "deltas" below): when the page stage rewrites
--     page-hours of a window that holds rows, each level above adds the new
--     contribution and takes away the old one, so a late batch costs the
--     rows it changes, not the periods it touches.
-- The measures (column order, kinds, vitals with thresholds) and the
-- histogram's constants come from pipeline/catalog.py, through
-- catalog_measures(), catalog_strategies(), the vital table, hist_bucket and
-- hist_value (pipeline/reference.py writes them at every migrate).
--
-- Web-vital histograms (docs/metrics.md): sparse log buckets, element
-- (bucket << 32) + count, the count signed (a delta's -1 takes a value
-- away). Bucket 0 holds values <= 0; bucket k >= 1 holds
-- [1e-4 * 1.04^(k-1), 1e-4 * 1.04^k), whose representative is within 1.96% of
-- any value in it. A histogram is a multiset: a bucket may repeat (counts
-- add). Monthly and yearly ones are merged to one element per bucket when
-- computed; deltas append to any of them (hist_add).

-- ------------------------------------------------------------ reference data
CREATE TABLE IF NOT EXISTS vital (
    name text PRIMARY KEY,
    good_max double precision NOT NULL,   -- good: value <= good_max
    poor_min double precision NOT NULL,   -- poor: value > poor_min
    position smallint NOT NULL UNIQUE
);
-- Its rows are the catalog's vitals (pipeline/catalog.py), written by
-- pipeline/reference.py after every migrate.

-- ------------------------------------------------------------ histograms
-- hist_bucket(v) and hist_value(bucket) are made from the catalog's HISTOGRAM
-- (pipeline/catalog.py) by pipeline/reference.py, before and after every migrate.

-- An element is (bucket << 32) + count with a signed 32-bit count: a delta
-- carries -1 for each value it takes away. For a count in [0, 2^31) this is
-- (bucket << 32) | count. The two halves of an element:
CREATE OR REPLACE FUNCTION hist_element_bucket(e bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((e + 2147483648) >> 32)::integer
$$;

CREATE OR REPLACE FUNCTION hist_element_count(e bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT e - (((e + 2147483648) >> 32) << 32)
$$;

-- One element per bucket with a count other than 0, in bucket order; NULL
-- when nothing is left.
CREATE OR REPLACE FUNCTION hist_merge(h bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg((b << 32) + c ORDER BY b)
    FROM (SELECT hist_element_bucket(e)::bigint AS b, sum(hist_element_count(e))::bigint AS c
          FROM unnest(h) AS e GROUP BY 1) AS merged
    WHERE c <> 0
$$;

-- A histogram with a delta added: the elements appended (a multiset: readers
-- sum the counts per bucket), merged once the array grows past 1024 elements
-- so that a row kept by deltas stays about as long as a recomputed one.
CREATE OR REPLACE FUNCTION hist_add(h bigint[], d bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(h) + cardinality(d) > 1024 THEN hist_merge(h || d)
                ELSE h || d END
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
        SELECT hist_element_bucket(e) AS b, sum(hist_element_count(e)) AS c
        FROM unnest(h) AS e GROUP BY 1 HAVING sum(hist_element_count(e)) <> 0
    ), running AS (
        SELECT b, sum(c) OVER (ORDER BY b) AS upto, sum(c) OVER () AS total FROM buckets
    )
    SELECT hist_value(b) FROM running
    WHERE total > 0 AND upto >= ceil(p * total) ORDER BY b LIMIT 1
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
    -- The statements of each source: pipeline/stage_sql.py.
    PERFORM _staged_ga_rebuild();
    PERFORM _staged_psi_rebuild();
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
    p_first := p_first - interval '1 hour';
    p_last := p_last + interval '1 hour';
    IF p_source = 'ga' THEN
        v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_ga s WHERE s.page_id = p.id AND s.hour >= p_first
                                      AND s.hour <= p_last));
    ELSE
        v_overlap := EXISTS (SELECT FROM page p WHERE EXISTS (
            SELECT FROM staged_psi s WHERE s.page_id = p.id AND s.hour >= p_first
                                       AND s.hour <= p_last));
    END IF;
    RETURN NOT v_overlap;
END
$fn$;

-- The fast path's dirty marks: every (page, day) of the batch's records, with
-- their hours, for the page stage (all of the batch's keys are new).
CREATE OR REPLACE FUNCTION _mark_batch_page_dirty(p_source text, p_batch bigint) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_source = 'ga' THEN
        PERFORM _staged_ga_mark_batch(p_batch);  -- pipeline/stage_sql.py
    ELSE
        PERFORM _staged_psi_mark_batch(p_batch);
    END IF;
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
    v_empty boolean;
    v_rows bigint;
BEGIN
    IF p_source = 'ga' THEN
        v_empty := NOT EXISTS (SELECT FROM staged_ga);
        IF v_empty THEN
            LOCK TABLE staged_ga IN ACCESS EXCLUSIVE MODE;
            ALTER TABLE staged_ga DROP CONSTRAINT staged_ga_pkey;
        END IF;
    ELSE
        v_empty := NOT EXISTS (SELECT FROM staged_psi);
        IF v_empty THEN
            LOCK TABLE staged_psi IN ACCESS EXCLUSIVE MODE;
            ALTER TABLE staged_psi DROP CONSTRAINT staged_psi_pkey;
        END IF;
    END IF;
    -- In key order (pipeline/stage_sql.py).
    IF p_source = 'ga' THEN
        v_rows := _staged_ga_insert_batch(p_batch);
    ELSE
        v_rows := _staged_psi_insert_batch(p_batch);
    END IF;
    IF v_empty THEN
        -- Enough memory to sort the keys of a large first load in one pass
        -- (13M rows: about 0.8 GB; the server's default is 64 MB, which spills).
        PERFORM set_config('maintenance_work_mem', '1GB', true);
        IF p_source = 'ga' THEN
            ALTER TABLE staged_ga ADD CONSTRAINT staged_ga_pkey PRIMARY KEY (page_id, hour);
        ELSE
            ALTER TABLE staged_psi
                ADD CONSTRAINT staged_psi_pkey PRIMARY KEY (page_id, hour, strategy);
        END IF;
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
    IF v_source = 'ga' THEN
        LOCK TABLE staged_ga IN SHARE ROW EXCLUSIVE MODE;
    ELSE
        LOCK TABLE staged_psi IN SHARE ROW EXCLUSIVE MODE;
    END IF;
    IF _staged_new_keys_only(v_source, v_first, v_last) THEN
        BEGIN
            rows_out := _staged_insert_batch(v_source, p_batch);
            rows_in := rows_out;
            RETURN;
        EXCEPTION WHEN unique_violation THEN
            NULL;  -- the batch repeats a key: deduplicated below
        END;
    END IF;
    -- The general path (pipeline/stage_sql.py).
    IF v_source = 'ga' THEN
        SELECT d.rows_in, d.rows_out INTO rows_in, rows_out FROM _staged_ga_dedup(p_batch) d;
    ELSE
        SELECT d.rows_in, d.rows_out INTO rows_in, rows_out FROM _staged_psi_dedup(p_batch) d;
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

    -- Through the pages: page_hour is keyed by (page, hour), so each page is one
    -- probe of its key (LATERAL ... LIMIT 1: never flattened into a join that
    -- reads the key by hour alone, which is the whole table).
    IF NOT EXISTS (SELECT FROM page p CROSS JOIN LATERAL (
        SELECT FROM page_hour t WHERE t.page_id = p.id AND t.hour >= p_from AND t.hour < p_to
        LIMIT 1) AS h
    ) THEN
        rows_out := _page_first_load(p_from, p_to);  -- pipeline/stage_sql.py
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
        SELECT 'interval', day, page_id, hours FROM _stage_keys ORDER BY day, page_id
        ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = d.hours | EXCLUDED.hours
        WHERE d.hours <> d.hours | EXCLUDED.hours;
    ELSE
        PERFORM _fill_stage_ranges(1);
        -- The rows as they were, then as they are: their difference is the
        -- interval stage's delta. A key whose every hour is dirty (a day
        -- delivered again whole, a rebuild) is handed on as a dirty key
        -- instead, recomputed above: dense, it costs less to recompute than the
        -- deltas of its every hour cost to write and add (13M + 13M, the newest
        -- 1% of the hours again: deltas 9.3 s, recomputed 6.6 s).
        CREATE TEMP TABLE IF NOT EXISTS _page_old ON COMMIT DROP AS
            SELECT * FROM page_hour LIMIT 0;
        CREATE TEMP TABLE IF NOT EXISTS _page_new ON COMMIT DROP AS
            SELECT * FROM page_hour LIMIT 0;
        TRUNCATE _page_old, _page_new;
        -- Each range is read by an index range scan of its own (LATERAL, kept
        -- apart by OFFSET 0): joined as a whole, the planner hashed the ranges
        -- and read the whole table (1M page-hours for 275 ranges: 300 ms). The
        -- ranges go in (page, hour) order, the tables' physical order, so the
        -- reads sweep each table once instead of jumping page to page per day.
        INSERT INTO _page_old
        SELECT t.* FROM (SELECT * FROM _stage_ranges WHERE hi - lo < interval '1 day'
                         ORDER BY page_id, lo) AS r
        CROSS JOIN LATERAL (SELECT * FROM page_hour t WHERE t.page_id = r.page_id
                            AND t.hour >= r.lo AND t.hour < r.hi OFFSET 0) AS t;
        rows_out := _page_upsert();  -- into _page_new as well
        DELETE FROM _page_new n USING _stage_keys k
        WHERE k.hours = 16777215 AND k.page_id = n.page_id AND n.hour >= k.day
          AND n.hour < k.day + interval '1 day';
        INSERT INTO pipeline_dirty AS d (stage, period_start, page_id, hours)
        SELECT 'interval', day, page_id, hours FROM _stage_keys WHERE hours = 16777215
        ORDER BY day, page_id
        ON CONFLICT (stage, period_start, page_id) DO UPDATE SET hours = EXCLUDED.hours
        WHERE d.hours <> EXCLUDED.hours;
        PERFORM _page_deltas();
    END IF;
END
$fn$;

-- ------------------------------------------------------------ exact float sums
-- The sum of a float column over a group, the same value whatever order the
-- rows are read in, as an exact decimal. Each value's whole part and its
-- fraction, rounded to a millionth (a microsecond of engagement, a millionth
-- of a score point), are summed apart as integer-valued doubles: exact in any
-- order while the whole parts stay below 2^53 (9e15 s in one group), and no
-- finite value can overflow them. The two sums become one numeric per group
-- (through bigint, which is exact; beyond its range the cast keeps 15
-- digits, far below any fraction). The aggregate tables store numeric(1000, 6),
-- so a delta adds to a stored sum exactly and a row kept by deltas equals one
-- recomputed from scratch. A cast of each value to numeric did the same at
-- ~3.5x the cost: it formats and parses every double.
CREATE OR REPLACE FUNCTION exact_numeric(v double precision) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN abs(v) < 9e18 THEN v::bigint::numeric ELSE v::numeric END
$$;

-- The statements whose column lists come from the catalog are plain SQL
-- functions generated by pipeline/stage_sql.py at migrate (one static
-- statement each, shown by \sf): the page stage's three, the interval and
-- roll-up stages' upserts and first loads, the deltas taken, added and handed
-- on, and the site-days. These helpers assembled them as text before.
DROP FUNCTION IF EXISTS _exact_sum_sql(text);
DROP FUNCTION IF EXISTS _count_sql(text, boolean, text);
DROP FUNCTION IF EXISTS _sum_sql(text, boolean);
DROP FUNCTION IF EXISTS _interval_select_list();
DROP FUNCTION IF EXISTS _measure_select_list(boolean);
DROP FUNCTION IF EXISTS _aggregate_columns();
DROP FUNCTION IF EXISTS _window_filled(text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _upsert_sql(text, text);
DROP FUNCTION IF EXISTS _upsert_sql(text, text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _upsert_sql(text, text, boolean);
DROP FUNCTION IF EXISTS _take_deltas(text, timestamptz, timestamptz, text);
DROP FUNCTION IF EXISTS _apply_deltas(text, text, text);
DROP FUNCTION IF EXISTS _pass_deltas(text, text);
DROP FUNCTION IF EXISTS _first_load_select(text, text, text, text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _first_load_select(text, text, text, text, text, timestamptz, timestamptz);
DROP FUNCTION IF EXISTS _first_load_select(text, text, text, text, text);
DROP FUNCTION IF EXISTS _rollup_aggregates(text);
DROP FUNCTION IF EXISTS site_daily_refresh(text);
DROP FUNCTION IF EXISTS site_daily_refresh(text, timestamptz, timestamptz);

-- ------------------------------------------------------------ deltas
-- A stage that rewrites rows of a window holding rows already hands the next
-- stage deltas (pipeline_delta, schema 0014): per (period, page) of the next
-- stage's grain, the new contribution minus the old one. The next stage adds
-- them to its rows and hands on their sum per coarser period, so a late
-- batch costs the rows it changes at every level, not the periods it touches.
-- A stage also still takes dirty keys (first loads, rebuilds): those it
-- recomputes from the finer table, which holds every change a pending delta
-- describes, so the deltas inside a recomputed key are dropped, not added.
--
-- The deltas of a stage's window, taken (DELETE ... RETURNING) and summed per
-- (period, page) into _deltas. Returns the delta rows taken.
CREATE OR REPLACE FUNCTION _take_deltas(p_stage text, p_from timestamptz, p_to timestamptz,
                                        p_hours integer DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $fn$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS _deltas (LIKE agg_interval) ON COMMIT DROP;
    TRUNCATE _deltas;
    IF NOT EXISTS (SELECT FROM pipeline_delta
                   WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to) THEN
        RETURN 0;  -- a first load: no statement of 50 aggregates to plan for nothing
    END IF;
    RETURN _stage_take_deltas(p_stage, p_from, p_to, p_hours);
END
$fn$;

-- Dirty (page, day) keys in [p_from, p_to), each with its dirty hours: the
-- intervals of p_hours hours holding one of them are recomputed from
-- page_hour, and the (page, day) marked dirty for the daily stage. Then the
-- page stage's deltas of the window (one per rewritten page-hour) outside
-- those intervals, summed per interval: added to agg_interval and handed on
-- to the daily stage per (page, day).
CREATE OR REPLACE FUNCTION stage_interval(
    p_from timestamptz, p_to timestamptz, p_hours integer,
    OUT rows_in bigint, OUT rows_out bigint
)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_deltas bigint;
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
    v_deltas := _take_deltas('interval', p_from, p_to, p_hours);
    rows_out := 0;

    IF rows_in > 0 THEN
        IF EXISTS (SELECT FROM agg_interval WHERE period_start >= p_from AND period_start < p_to)
        THEN
            PERFORM _fill_stage_ranges(p_hours);
            rows_out := _interval_upsert(p_hours);
            DELETE FROM _deltas d USING _stage_ranges r
            WHERE d.page_id = r.page_id AND d.period_start >= r.lo AND d.period_start < r.hi;
        ELSE
            -- A first load reads the whole window of each page of its keys.
            rows_out := _interval_first_load(p_from, p_to, p_hours);
            DELETE FROM _deltas WHERE page_id IN (SELECT page_id FROM _stage_keys);
            -- Every day it wrote is a key, those only deltas brought included.
            INSERT INTO _stage_keys
            SELECT DISTINCT t.page_id, utc_trunc('day', t.period_start), 16777215
            FROM agg_interval t
            WHERE t.page_id IN (SELECT page_id FROM _stage_keys)
              AND t.period_start >= p_from AND t.period_start < p_to
              AND NOT EXISTS (SELECT FROM _stage_keys k WHERE k.page_id = t.page_id
                              AND k.day = utc_trunc('day', t.period_start));
        END IF;
        -- Recomputed days are recomputed above too: keys come from first loads,
        -- rebuilds and days delivered again whole, whose rows the daily stage
        -- reads as cheaply as it would add their deltas.
        INSERT INTO pipeline_dirty (stage, period_start, page_id)
        SELECT 'daily', day, page_id FROM _stage_keys ORDER BY day, page_id
        ON CONFLICT DO NOTHING;
    END IF;
    IF v_deltas > 0 THEN
        rows_in := rows_in + v_deltas;
        rows_out := rows_out + _agg_interval_add_deltas();
        PERFORM _hand_on_deltas('daily', 'day');
    END IF;
END
$fn$;

-- ------------------------------------------------------------ daily, monthly, yearly
-- One roll-up stage: dirty (page, period) keys of p_stage in [p_from, p_to),
-- each recomputed from the finer table's rows inside the period, marking the
-- next stage's (page, coarser period) dirty; then the stage's deltas outside
-- those keys, added to its rows and handed on per coarser period. The
-- statements per stage (source, target, period, how histograms combine) are
-- generated from the catalog (_<stage>_upsert, _<stage>_first_load, ...), and
-- so is the choice among them by the stage's name (_rollup_upsert, ...).
CREATE OR REPLACE FUNCTION _stage_rollup(
    p_stage text, p_from timestamptz, p_to timestamptz,
    OUT rows_in bigint, OUT rows_out bigint
)
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
DECLARE
    v_stage record;       -- the stage's row of the catalog
    v_deltas bigint;
BEGIN
    SELECT * INTO v_stage FROM catalog_stages() WHERE name = p_stage
                                                  AND period IN ('day', 'month', 'year');
    IF NOT FOUND THEN
        RAISE EXCEPTION 'not a roll-up stage: %', p_stage USING ERRCODE = '22023';
    END IF;

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
    v_deltas := _take_deltas(p_stage, p_from, p_to);
    rows_out := 0;

    IF rows_in > 0 THEN
        IF _rollup_filled(p_stage, p_from, p_to) THEN
            rows_out := _rollup_upsert(p_stage, p_from, p_to);
            DELETE FROM _deltas d USING _rollup_keys k
            WHERE d.page_id = k.page_id AND d.period_start = k.period;
        ELSE
            rows_out := _rollup_first_load(p_stage, p_from, p_to);
            -- A first load reads the whole window of each page of its keys, so the
            -- periods it wrote are its keys, and that page's deltas are in them:
            -- with the periods only deltas brought (a page's later hours staged
            -- before this stage first ran), the site-days and the next stage's
            -- keys below cover every row written.
            PERFORM _rollup_first_load_keys(p_stage, p_from, p_to);
            DELETE FROM _deltas WHERE page_id IN (SELECT page_id FROM _rollup_keys);
        END IF;

        IF v_stage.next IS NOT NULL THEN
            INSERT INTO pipeline_dirty (stage, period_start, page_id)
            SELECT DISTINCT v_stage.next, utc_trunc(v_stage.next_period, period), page_id
            FROM _rollup_keys
            ORDER BY 2, 3
            ON CONFLICT DO NOTHING;
        END IF;
    END IF;
    IF v_deltas > 0 THEN
        rows_in := rows_in + v_deltas;
        rows_out := rows_out + _rollup_add_deltas(p_stage);
        IF v_stage.next IS NOT NULL THEN
            PERFORM _hand_on_deltas(v_stage.next, v_stage.next_period);
        END IF;
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
-- Recomputes agg_site_daily for the site-days in _site_days (period_start,
-- site_id; the caller fills it), from agg_daily rows in [p_from, p_to): the
-- bounds let the planner read only the window's days.
CREATE OR REPLACE FUNCTION site_daily_refresh(
    p_from timestamptz DEFAULT '-infinity',
    p_to timestamptz DEFAULT 'infinity'
) RETURNS bigint
LANGUAGE plpgsql SET jit = off SET work_mem = '128MB' AS $fn$
BEGIN
    RETURN _site_daily_refresh(p_from, p_to);
END
$fn$;

-- The daily stage: pages' days, then the site-days they belong to: those of
-- recomputed keys recomputed from agg_daily, the others kept by the deltas
-- the pages' days took, summed per site and day.
CREATE OR REPLACE FUNCTION stage_daily(p_from timestamptz, p_to timestamptz,
                                       OUT rows_in bigint, OUT rows_out bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
    SELECT r.rows_in, r.rows_out INTO rows_in, rows_out FROM _stage_rollup('daily', p_from, p_to) r;
    CREATE TEMP TABLE IF NOT EXISTS _site_days (period_start timestamptz, site_id integer)
        ON COMMIT DROP;
    TRUNCATE _site_days;
    INSERT INTO _site_days
    SELECT DISTINCT k.period, p.site_id FROM _rollup_keys k JOIN page p ON p.id = k.page_id;
    IF FOUND THEN
        PERFORM site_daily_refresh(p_from, p_to);
    END IF;
    IF EXISTS (SELECT FROM _deltas) THEN
        PERFORM _site_daily_add_deltas();
    END IF;
END
$fn$;
