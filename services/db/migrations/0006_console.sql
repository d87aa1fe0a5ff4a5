-- The agent console: users, server-side sessions, sign-in throttling, queue work items; the
-- privacy log; and the notifications that feed the console's live timeline.

CREATE TABLE console_users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    password_hash text NOT NULL,                       -- argon2id, PHC string
    role          text NOT NULL CHECK (role IN ('agent', 'supervisor', 'admin')),
    departments   text[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (departments <@ ARRAY['sales', 'marketing', 'finance', 'after_sales', 'triage'])
);

-- One row per signed-in browser. Only the SHA-256 of the cookie's random id is stored.
CREATE TABLE console_sessions (
    id_hash    text PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES console_users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);

-- Failed sign-ins, per username, for throttling (cleared by a successful sign-in).
CREATE TABLE console_login_failures (
    username text NOT NULL,
    at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_login_failures_user ON console_login_failures (username, at);

-- The work state of a routed interaction in the department queues. No row: open.
CREATE TABLE console_queue_items (
    event_id    uuid PRIMARY KEY,
    state       text NOT NULL CHECK (state IN ('open', 'claimed', 'done')),
    assignee    uuid REFERENCES console_users (id) ON DELETE SET NULL,
    updated_by  uuid REFERENCES console_users (id) ON DELETE SET NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_queue_items_assignee ON console_queue_items (assignee) WHERE assignee IS NOT NULL;
-- The queues list routing decisions by department, newest first.
CREATE INDEX routing_decisions_department ON routing_decisions (department, routed_at DESC);
CREATE INDEX routing_decisions_copies ON routing_decisions USING gin (copies);

-- Privacy actions (export, delete): who, when, why. No personal data: the customer is named
-- only by its random id, and the reason is stored with the customer's identity values and
-- name masked.
CREATE TABLE privacy_log (
    seq         bigserial PRIMARY KEY,
    customer_id uuid NOT NULL,
    action      text NOT NULL CHECK (action IN ('export', 'delete')),
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX privacy_log_customer ON privacy_log (customer_id, seq);

-- Live timeline: every new timeline row, delivery state and routing decision is announced on
-- the channel omnihub_timeline as '<customer id>/<event id>' (a delivery state whose message is
-- not on the timeline yet: '<customer id>/command:<command id>'). The API process listens on
-- one connection and fans the notifications out to the console's SSE streams.
CREATE FUNCTION omnihub_notify_timeline() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('omnihub_timeline', NEW.customer_id::text || '/' || NEW.event_id::text);
    RETURN NULL;
END $$;

CREATE FUNCTION omnihub_notify_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    found_customer uuid;
    found_event    uuid;
BEGIN
    SELECT customer_id, event_id INTO found_customer, found_event
    FROM timeline WHERE command_id = NEW.command_id LIMIT 1;
    IF found_customer IS NOT NULL THEN
        PERFORM pg_notify('omnihub_timeline', found_customer::text || '/' || found_event::text);
        RETURN NULL;
    END IF;
    SELECT customer_id INTO found_customer FROM outbound_messages WHERE command_id = NEW.command_id;
    IF found_customer IS NOT NULL THEN
        PERFORM pg_notify('omnihub_timeline',
                          found_customer::text || '/command:' || NEW.command_id::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER timeline_notify AFTER INSERT ON timeline
    FOR EACH ROW EXECUTE FUNCTION omnihub_notify_timeline();
CREATE TRIGGER delivery_states_notify AFTER INSERT ON delivery_states
    FOR EACH ROW EXECUTE FUNCTION omnihub_notify_delivery();
CREATE TRIGGER routing_decisions_notify AFTER INSERT ON routing_decisions
    FOR EACH ROW EXECUTE FUNCTION omnihub_notify_timeline();

-- A deleted customer stays deleted: an event that was in flight when the customer was deleted
-- (unified before, projected after) is not written back onto its timeline.
CREATE FUNCTION omnihub_skip_deleted_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM customers WHERE id = NEW.customer_id AND status = 'deleted') THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER timeline_skip_deleted BEFORE INSERT ON timeline
    FOR EACH ROW EXECUTE FUNCTION omnihub_skip_deleted_customer();
CREATE TRIGGER routing_decisions_skip_deleted BEFORE INSERT ON routing_decisions
    FOR EACH ROW EXECUTE FUNCTION omnihub_skip_deleted_customer();
