-- Late data by deltas (functions/stages.sql, "Deltas").
--
-- pipeline_delta: what a stage has changed in its table and the next stage has
-- not yet added to its own, one row per (stage, period, page) change, signed:
-- the new contribution of the rewritten rows minus their old one, in the
-- aggregate tables' columns. Sums and counts add; histogram elements carry a
-- signed count (bucket << 32) + count. A stage takes the deltas of its window
-- with its dirty keys, in one transaction, and adds them to its rows.
CREATE TABLE pipeline_delta (LIKE agg_interval INCLUDING DEFAULTS);
ALTER TABLE pipeline_delta
    ADD COLUMN stage text NOT NULL CHECK (stage IN ('interval', 'daily', 'monthly', 'yearly')),
    ADD COLUMN marked_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX pipeline_delta_window ON pipeline_delta (stage, period_start);

-- The float sums of the aggregate tables become exact decimals: a delta adds
-- to a stored sum without rounding, so a row kept up to date by deltas holds
-- the same value as one recomputed from scratch. Six decimals: each value is
-- summed to a millionth (a microsecond of engagement, a millionth of a score
-- point); 1000 digits hold any sum of finite doubles.
ALTER TABLE agg_interval
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);
ALTER TABLE agg_daily
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);
ALTER TABLE agg_monthly
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);
ALTER TABLE agg_yearly
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);
ALTER TABLE agg_site_daily
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);
ALTER TABLE pipeline_delta
    ALTER COLUMN engagement_seconds TYPE numeric(1000, 6),
    ALTER COLUMN mobile_score_sum TYPE numeric(1000, 6),
    ALTER COLUMN desktop_score_sum TYPE numeric(1000, 6);

-- Histograms are compressed with lz4 rather than pglz: a month's or a year's
-- histograms are stored out of line, and a delta rewrites them; lz4
-- compresses several times faster at about the same size.
DO $$
DECLARE
    v_table text;
    v_column text;
BEGIN
    FOREACH v_table IN ARRAY ARRAY['agg_interval', 'agg_daily', 'agg_monthly', 'agg_yearly',
                                   'agg_site_daily', 'pipeline_delta'] LOOP
        FOR v_column IN
            SELECT attname FROM pg_attribute
            WHERE attrelid = v_table::regclass AND attname LIKE '%\_hist' AND NOT attisdropped
        LOOP
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION lz4', v_table, v_column);
        END LOOP;
    END LOOP;
END
$$;

-- A late batch updates rows in place, spread over the tables. With room left on
-- each page, such an update is a HOT update: the new version goes on the same
-- page and no index is touched (the aggregate tables carry three, page_hour
-- and the staged tables two); a full page moves it elsewhere and adds an entry
-- to every index. 10% of each page is kept free from now on (tables written
-- before keep their layout until rewritten, e.g. by a rebuild).
ALTER TABLE staged_ga SET (fillfactor = 90);
ALTER TABLE staged_psi SET (fillfactor = 90);
ALTER TABLE page_hour SET (fillfactor = 90);
ALTER TABLE agg_interval SET (fillfactor = 90);
ALTER TABLE agg_daily SET (fillfactor = 90);
ALTER TABLE agg_monthly SET (fillfactor = 90);
ALTER TABLE agg_yearly SET (fillfactor = 90);
ALTER TABLE agg_site_daily SET (fillfactor = 90);
