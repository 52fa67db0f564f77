-- The settings that shape stored data, as they were when the data was built.
-- Applied by pipeline/migrations/0021_data_settings.py;
-- 0013_data_settings.down.sql reverses it.
--
-- One row per setting declared in pipeline/datasettings.py (the interval
-- length, the histogram's bucket base and growth), its value as text in the
-- form that module writes. The rows are written at migrate time, from the
-- settings migrate runs with, for each declared setting that has no row
-- (a fresh database, an existing one upgraded to this schema, a setting
-- declared later); they are changed only by a rebuild
-- (`manage.py pipeline reshape`). Workers, the API and the stages compare
-- them with their own settings and refuse to start on a mismatch.
CREATE TABLE pipeline_data_setting (
    name text PRIMARY KEY,
    value text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
