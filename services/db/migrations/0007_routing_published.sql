-- When a routing decision's records were acknowledged by the broker. A replayed event whose
-- decision is already published is not published again (no duplicates on department topics
-- after a rebalance or a restart); one whose publish never completed is published then.
ALTER TABLE routing_decisions ADD COLUMN published_at timestamptz;
UPDATE routing_decisions SET published_at = routed_at;
