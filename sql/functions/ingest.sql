-- Functions used by ingestion. CREATE OR REPLACE: when this file changes, a new
-- migration re-applies it (pipeline.sqlfiles.run_sql_file).

-- The id of a canonical page, creating the page and its site on first sight.
-- Safe when several ingests race: INSERT ... ON CONFLICT DO NOTHING waits for
-- a concurrent insert of the same key to commit, after which the SELECT sees
-- its row.
CREATE OR REPLACE FUNCTION page_ensure(p_url text, p_host text, p_path text)
RETURNS integer
LANGUAGE plpgsql AS $fn$
DECLARE
    v_site integer;
    v_page integer;
BEGIN
    SELECT id INTO v_page FROM page WHERE url = p_url;
    IF FOUND THEN
        RETURN v_page;
    END IF;
    INSERT INTO site (host) VALUES (p_host) ON CONFLICT (host) DO NOTHING;
    SELECT id INTO STRICT v_site FROM site WHERE host = p_host;
    INSERT INTO page (site_id, url, path) VALUES (v_site, p_url, p_path)
        ON CONFLICT (url) DO NOTHING;
    SELECT id INTO STRICT v_page FROM page WHERE url = p_url;
    RETURN v_page;
END
$fn$;
