-- The staged tables hold nothing that raw does not: each is the last record
-- per natural key of the batches staged so far, a function of raw_* and the
-- ledger. They are UNLOGGED: their rows write no WAL (a 13M-record GA and PSI
-- batch staged side by side: 55 s -> 35 s), and after a crash PostgreSQL
-- empties them. staged_marker, unlogged too, holds one row while the staged
-- tables are whole; a crash empties it with them, and the first staged or page
-- stage after it rebuilds both tables from raw (staged_ensure() in
-- functions/stages.sql) before doing its own work. Reports never read staged,
-- so neither do replicas need it.
ALTER TABLE staged_ga SET UNLOGGED;
ALTER TABLE staged_psi SET UNLOGGED;
CREATE UNLOGGED TABLE staged_marker (
    whole boolean PRIMARY KEY DEFAULT true CHECK (whole)
);
INSERT INTO staged_marker DEFAULT VALUES;
