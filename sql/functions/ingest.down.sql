DROP FUNCTION IF EXISTS page_ensure(text, text, text);
