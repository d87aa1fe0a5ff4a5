-- Delivery states a provider reported (a Twilio status callback) before the dispatcher recorded
-- that provider's id of the message in outbound_messages: a callback can outrun the send's own
-- bookkeeping. They wait here, keyed by the provider's id, until the dispatcher's delivery
-- status of that message claims them (services/processors/receipts.py).
CREATE TABLE pending_delivery_states (
    channel             text NOT NULL,
    provider_message_id text NOT NULL,
    state               text NOT NULL,
    rank                smallint NOT NULL,
    occurred_at         timestamptz NOT NULL,
    error_code          text,
    error_message       text,
    parked_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, provider_message_id, state)
);
-- Receipts of messages the hub never sent (another system on the same Messaging Service) are
-- never claimed; they are pruned after a day.
CREATE INDEX pending_delivery_states_parked ON pending_delivery_states (parked_at);
