-- Staged rows are looked up by (page, day) when the page stage recomputes a
-- dirty key: page first in their primary keys serves that lookup and the
-- staged stage's upsert with one index.
ALTER TABLE staged_ga DROP CONSTRAINT staged_ga_pkey;
ALTER TABLE staged_ga ADD PRIMARY KEY (page_id, hour);
ALTER TABLE staged_psi DROP CONSTRAINT staged_psi_pkey;
ALTER TABLE staged_psi ADD PRIMARY KEY (page_id, hour, strategy);
