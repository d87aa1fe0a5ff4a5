-- Replies on a session channel (web chat) that the customer may not see: the dispatcher
-- records each one it relays, and once it is due, if the customer has not read it and left an
-- address for replies, sends it there (services/dispatcher/unseen.py). No text is kept here:
-- it is read from the timeline, so erasure leaves nothing to send.
CREATE TABLE unseen_replies (
    command_id  uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    channel     text NOT NULL,
    due_at      timestamptz NOT NULL
);
CREATE INDEX unseen_replies_due ON unseen_replies (due_at);
