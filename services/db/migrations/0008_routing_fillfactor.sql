-- Routing decisions are written once and then marked published once (published_at, a column
-- no index reads). With pages filled to the brim the mark wrote a new row version elsewhere
-- and new entries in every index (the primary key, departments, the copies' GIN); with half
-- of each page left free the new version stays on its page (a HOT update, no index entries):
-- PostgreSQL's CPU for the mark 7-13 -> 2-3 us a row (micro-benchmark, batches of 500). The
-- table takes about twice the pages. Only pages written from now on are affected.
ALTER TABLE routing_decisions SET (fillfactor = 50);
