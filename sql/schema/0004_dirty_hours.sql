-- Dirty keys of the page and interval stages carry the hours of their day
-- that changed: bit n = hour n (UTC). The page stage rewrites only those
-- page-hours, the interval stage only the intervals holding one of them, so a
-- late batch touching 1% of the page-hours no longer rewrites every hour of
-- every day it touches. The default (all 24 hours) is the whole day: keys of
-- the other stages, and whole-range rebuilds, ignore or fill the mask.
ALTER TABLE pipeline_dirty ADD COLUMN hours integer NOT NULL DEFAULT 16777215;
