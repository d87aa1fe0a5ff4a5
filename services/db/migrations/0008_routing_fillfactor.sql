-- Routing decisions are written once and then marked published once (published_at, a column
-- no index reads): with half of each page left free the mark's new row version stays on its
-- page (a HOT update, no new index entries), for about twice the pages. Only pages written from
-- now on are affected (docs/design-notes.md#servicesdbmigrations0008_routing_fillfactorsql).
ALTER TABLE routing_decisions SET (fillfactor = 50);
