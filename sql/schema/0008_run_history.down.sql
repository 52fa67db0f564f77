DROP FUNCTION IF EXISTS mark_window_dirty(text, timestamptz, timestamptz);
DROP TABLE IF EXISTS pipeline_task_failure;
DROP TABLE IF EXISTS pipeline_run;
