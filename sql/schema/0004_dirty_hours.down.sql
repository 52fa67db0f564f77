ALTER TABLE pipeline_dirty DROP COLUMN hours;
