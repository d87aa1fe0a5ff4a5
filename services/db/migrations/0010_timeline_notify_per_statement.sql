-- New timeline rows are announced by one trigger call a statement instead of one a row.
--
-- The AFTER INSERT row trigger of migration 0006 ran its PL/pgSQL function once for every row
-- (and queued every row for it). The processors write a batch of ~1,000 rows in one INSERT, and
-- the table already keeps a statement's rows for the deleted-customer guard (migration 0009),
-- so one call over the rows written announces them all, in the same form as before
-- ('<customer id>/<event id>', one notification a row), for less of PostgreSQL's time a row
-- (docs/design-notes.md#servicesdbmigrations0010_timeline_notify_per_statementsql).
DROP TRIGGER timeline_notify ON timeline;

CREATE FUNCTION omnihub_notify_timeline_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('omnihub_timeline', customer_id::text || '/' || event_id::text)
    FROM written;
    RETURN NULL;
END $$;

CREATE TRIGGER timeline_notify AFTER INSERT ON timeline
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION omnihub_notify_timeline_rows();

-- Nothing calls the row trigger's function any more (migration 0009 dropped its other user).
DROP FUNCTION omnihub_notify_timeline();
