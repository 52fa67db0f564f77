ALTER TABLE staged_psi DROP CONSTRAINT staged_psi_pkey;
ALTER TABLE staged_psi ADD PRIMARY KEY (hour, page_id, strategy);
ALTER TABLE staged_ga DROP CONSTRAINT staged_ga_pkey;
ALTER TABLE staged_ga ADD PRIMARY KEY (hour, page_id);
