-- The hand-off between stages: the ledger's queued state and the outbox
-- (schema 0011), written in the transaction of what came before.
-- CREATE OR REPLACE: when this file changes, a new migration re-applies it.
--
-- A window is queued at most once: queueing one that is queued or running
-- already changes nothing. Nothing is lost by that, because whoever declines
-- to queue a window does so under the window's hand-off lock (an advisory
-- transaction lock, class 0x4D50 + the stage's rank), and so does every
-- window whose state made it decline when that window finishes:
--   * a window that is running takes its own lock when it finishes and queues
--     itself again if keys of its window were marked dirty meanwhile;
--   * a time window is not queued while a window of an earlier time stage
--     overlapping it is queued or running (its keys are still coming: a
--     month's roll-up waits for the last of its days), and each such window
--     considers, when it finishes, the window of every later stage holding
--     it; a page window likewise waits for the staged batches whose hours
--     overlap it, and a staged batch considers every page window of its
--     hours. Windows of later stages are never finer, so the window of a
--     later stage holding a finished window's start is the only one it
--     overlaps.
-- Whoever takes the lock second sees what the first committed (READ
-- COMMITTED: each statement reads what committed before it started), so one of
-- the two queues the window. Locks are taken in (stage, window) order, which
-- every caller follows, and a ledger row is updated only under its lock.

-- A stage's place in the chain, from the catalog (pipeline/catalog.py).
CREATE OR REPLACE FUNCTION _stage_rank(p_stage text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT catalog_stage_rank(p_stage)
$$;

-- The hand-off lock of a window (a batch for the staged stage).
CREATE OR REPLACE FUNCTION pipeline_handoff_lock(p_stage text, p_batch bigint,
                                                 p_start timestamptz) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(
        x'4D50'::integer + _stage_rank(p_stage),
        hashtext(coalesce(p_batch::text, p_start::text)))
$$;

-- Queues a window: its ledger row `queued` and one outbox message, unless it is
-- queued or running already (p_force: queue it anyway, for a window whose run
-- is past its time limit). Returns whether it was queued.
CREATE OR REPLACE FUNCTION pipeline_enqueue(p_stage text, p_batch bigint, p_start timestamptz,
                                            p_end timestamptz, p_force boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_ledger bigint;
BEGIN
    PERFORM pipeline_handoff_lock(p_stage, p_batch, p_start);
    INSERT INTO pipeline_ledger AS l (stage, batch_id, window_start, window_end, status,
                                      queued_at, updated_at)
    VALUES (p_stage, p_batch, p_start, p_end, 'queued', now(), now())
    ON CONFLICT (stage, batch_id, window_start) DO UPDATE
        SET status = 'queued', queued_at = now(), updated_at = now(),
            window_end = EXCLUDED.window_end
        WHERE p_force OR l.status NOT IN ('queued', 'running')
    RETURNING id INTO v_ledger;
    IF v_ledger IS NULL THEN
        RETURN false;
    END IF;
    INSERT INTO pipeline_outbox (ledger_id, task_name, batch_id, window_start)
    VALUES (v_ledger, 'pipeline.stage.' || p_stage, p_batch,
            CASE WHEN p_batch IS NULL THEN p_start END)
    ON CONFLICT (ledger_id) WHERE published_at IS NULL DO NOTHING;
    RETURN true;
END
$fn$;

-- Queues the window [p_start, p_end) of a time stage if it holds dirty keys or deltas
-- and no window that will consider it when it finishes is still queued or
-- running (see above). p_from / p_to: the bounds its keys are read in (the
-- windows at the ends of the range are open: -infinity / infinity).
CREATE OR REPLACE FUNCTION pipeline_queue_window(p_stage text, p_start timestamptz,
                                                 p_end timestamptz, p_from timestamptz,
                                                 p_to timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pipeline_handoff_lock(p_stage, NULL, p_start);
    IF NOT EXISTS (SELECT FROM pipeline_dirty
                   WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to)
       AND NOT EXISTS (SELECT FROM pipeline_delta
                       WHERE stage = p_stage AND period_start >= p_from AND period_start < p_to)
    THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT FROM pipeline_ledger l
               WHERE l.status IN ('queued', 'running') AND l.stage <> 'staged'
                 AND _stage_rank(l.stage) < _stage_rank(p_stage)
                 AND l.window_start < p_end AND l.window_end > p_start) THEN
        RETURN false;  -- an earlier stage's window inside it queues it when it finishes
    END IF;
    IF p_stage = 'page' AND EXISTS (
        SELECT FROM pipeline_ledger l JOIN ingest_batch b ON b.id = l.batch_id
        WHERE l.stage = 'staged' AND l.status IN ('queued', 'running')
          AND b.first_hour < p_end AND b.last_hour >= p_start) THEN
        RETURN false;  -- a batch of its hours is still to be staged
    END IF;
    RETURN pipeline_enqueue(p_stage, NULL, p_start, p_end);
END
$fn$;

-- The hand-off of an ingest batch, in its final transaction: queued for the
-- staged stage (p_queue: the chain is triggered) or left pending for
-- `manage.py pipeline run`.
CREATE OR REPLACE FUNCTION pipeline_hand_off_batch(p_batch bigint, p_queue boolean)
RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF p_queue THEN
        RETURN pipeline_enqueue('staged', p_batch, NULL, NULL);
    END IF;
    INSERT INTO pipeline_ledger (stage, batch_id) VALUES ('staged', p_batch)
    ON CONFLICT DO NOTHING;
    RETURN false;
END
$fn$;
