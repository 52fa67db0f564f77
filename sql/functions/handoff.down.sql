DROP FUNCTION IF EXISTS pipeline_hand_off_batch(bigint, boolean);
DROP FUNCTION IF EXISTS pipeline_queue_window(text, timestamptz, timestamptz, timestamptz,
                                              timestamptz);
DROP FUNCTION IF EXISTS pipeline_enqueue(text, bigint, timestamptz, timestamptz, boolean);
DROP FUNCTION IF EXISTS pipeline_handoff_lock(text, bigint, timestamptz);
DROP FUNCTION IF EXISTS _stage_rank(text);
