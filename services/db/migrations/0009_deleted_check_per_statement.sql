-- A deleted customer stays deleted: checked once a statement instead of once a row; and a
-- routing decision is no longer announced apart from its timeline row.
--
-- The BEFORE INSERT row triggers of migration 0006 ran a PL/pgSQL lookup for every timeline
-- row and routing decision, a large share of PostgreSQL's time for the processors' writes
-- (docs/design-notes.md#servicesdbmigrations0009_deleted_check_per_statementsql). The
-- processors' own inserts now leave out the events of deleted customers themselves
-- (services/processors/timeline.py and route.py), in the join they already make, so what they
-- return (the decisions still to publish) is right. These statement triggers stay as the guard
-- for any other writer: after each INSERT they delete, in one join over the rows it wrote, those
-- whose customer is deleted.
DROP TRIGGER timeline_skip_deleted ON timeline;
DROP TRIGGER routing_decisions_skip_deleted ON routing_decisions;
DROP FUNCTION omnihub_skip_deleted_customer();

-- One function for both tables (each has event_id and customer_id): the table is the trigger's.
CREATE FUNCTION omnihub_drop_deleted_customers_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'DELETE FROM %I.%I t USING written w, customers c'
        ' WHERE t.event_id = w.event_id AND c.id = w.customer_id AND c.status = ''deleted''',
        TG_TABLE_SCHEMA, TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER timeline_drop_deleted AFTER INSERT ON timeline
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION omnihub_drop_deleted_customers_rows();
CREATE TRIGGER routing_decisions_drop_deleted AFTER INSERT ON routing_decisions
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION omnihub_drop_deleted_customers_rows();

-- The processors write an event's routing decision and its timeline row in one transaction
-- (services/processors/agents.py, _write), so the timeline row's notification, delivered at
-- commit, already tells the console to reconcile both: the decision's own told it nothing
-- more (docs/design-notes.md#servicesdbmigrations0009_deleted_check_per_statementsql).
DROP TRIGGER routing_decisions_notify ON routing_decisions;
