-- A site's display name and time zone. Applied by
-- pipeline/migrations/0017_site_profile.py; 0009_site_profile.down.sql reverses it.
--
-- Sites are still created on first ingest (page_ensure in functions/ingest.sql
-- inserts the host only): both columns have defaults, so that insert is
-- unchanged. An empty name means "no display name": the site is shown by its
-- host. time_zone is an IANA name (validated with zoneinfo where it is edited:
-- the admin, pipeline.models.Site); it is stored for the site's owners and does
-- not change reports, which stay in UTC.
ALTER TABLE site
    ADD COLUMN name text NOT NULL DEFAULT '',
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC' CHECK (time_zone <> '');
