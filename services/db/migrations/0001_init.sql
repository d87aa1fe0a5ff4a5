-- The first timeline: customers, their identities, the timeline, delivery states, API tokens.

CREATE TABLE customers (
    id          uuid PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    display_name text
);

CREATE TABLE identities (
    type        text NOT NULL,
    scope       text NOT NULL DEFAULT '',
    value       text NOT NULL,
    customer_id uuid NOT NULL REFERENCES customers (id),
    first_event uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (type, scope, value)
);
CREATE INDEX identities_customer ON identities (customer_id);

CREATE TABLE timeline (
    event_id            uuid PRIMARY KEY,
    customer_id         uuid NOT NULL,
    occurred_at         timestamptz NOT NULL,
    received_at         timestamptz NOT NULL,
    projected_at        timestamptz NOT NULL DEFAULT now(),
    channel             text NOT NULL,
    direction           text NOT NULL,
    kind                text NOT NULL,
    subject             text,
    body                text,
    language            text,
    thread_id           text,
    provider_message_id text NOT NULL,
    command_id          uuid,
    department          text,
    interaction         jsonb NOT NULL
);
-- Keyset paging, newest first: a page costs the same whatever the customer's history length.
CREATE INDEX timeline_customer_time ON timeline (customer_id, occurred_at DESC, event_id DESC);
CREATE INDEX timeline_command ON timeline (command_id) WHERE command_id IS NOT NULL;

-- Delivery states of outbound messages; the current one is the highest-ranked (never backwards).
CREATE TABLE delivery_states (
    command_id          uuid NOT NULL,
    state               text NOT NULL,
    rank                smallint NOT NULL,
    occurred_at         timestamptz NOT NULL,
    provider_message_id text,
    error_code          text,
    error_message       text,
    PRIMARY KEY (command_id, state)
);

-- What the dispatcher sent: one row per command, so a redelivered command is not sent twice,
-- and the provider's id of each sent message, so inbound echoes of our own messages are dropped.
CREATE TABLE outbound_messages (
    command_id          uuid PRIMARY KEY,
    customer_id         uuid NOT NULL,
    channel             text NOT NULL,
    provider_message_id text,
    state               text NOT NULL,
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX outbound_provider_id ON outbound_messages (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE api_tokens (
    id          uuid PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE,
    role        text NOT NULL CHECK (role IN ('admin', 'agent', 'integration')),
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
