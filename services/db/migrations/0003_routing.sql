-- Routing decisions: one row per routed event (its primary department), written by the
-- processors' route agent. The timeline takes its department (and, when the interaction had
-- none, its language) from here through a LEFT JOIN: the route and project agents consume the
-- unified topic independently, so either may handle an event first. Replays keep the first
-- decision (ON CONFLICT DO NOTHING). Events a rule ignores (outbound) have no row.
CREATE TABLE routing_decisions (
    event_id        uuid PRIMARY KEY,
    customer_id     uuid NOT NULL,
    department      text NOT NULL,
    copies          text[] NOT NULL DEFAULT '{}',
    priority        text NOT NULL DEFAULT 'normal',
    tags            text[] NOT NULL DEFAULT '{}',
    rule_id         text NOT NULL,
    ruleset_version text NOT NULL,
    reason          text NOT NULL,
    language        text,
    confidence      real,
    routed_at       timestamptz NOT NULL DEFAULT now()
);
