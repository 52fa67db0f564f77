CREATE INDEX page_hour_page ON page_hour (page_id, hour);
CREATE UNIQUE INDEX page_hour_key ON page_hour (hour, page_id);
ALTER TABLE page_hour DROP CONSTRAINT page_hour_pkey;
ALTER TABLE page_hour ADD CONSTRAINT page_hour_pkey PRIMARY KEY USING INDEX page_hour_key;
