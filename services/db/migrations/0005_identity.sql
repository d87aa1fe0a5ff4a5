-- Identity resolution: merges that can be undone, protection rules, review flags, profiles.

ALTER TABLE customers
    ADD COLUMN status       text NOT NULL DEFAULT 'active'
                            CHECK (status IN ('active', 'merged', 'deleted')),
    ADD COLUMN merged_into  uuid REFERENCES customers (id),
    ADD COLUMN merge_count  integer NOT NULL DEFAULT 0,
    ADD COLUMN review       jsonb NOT NULL DEFAULT '[]';
CREATE INDEX customers_merged_into ON customers (merged_into) WHERE merged_into IS NOT NULL;
CREATE INDEX customers_review ON customers ((jsonb_array_length(review) > 0))
    WHERE jsonb_array_length(review) > 0;

-- Whether an identity value may decide who the customer is.
ALTER TABLE identities
    ADD COLUMN matching text NOT NULL DEFAULT 'active'
               CHECK (matching IN ('active', 'blocked', 'shared'));

-- Append-only: every decision about an identity, accepted or refused, with its provenance.
CREATE TABLE identity_link_log (
    seq            bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT clock_timestamp(),
    type           text NOT NULL,
    scope          text NOT NULL,
    value          text NOT NULL,
    customer_id    uuid,
    action         text NOT NULL,  -- link, merge, split, manual_link, manual_unlink, shared ...
    decision       text NOT NULL CHECK (decision IN ('accepted', 'refused')),
    rule           text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    event_id       uuid,
    other_customer uuid,
    actor          text NOT NULL DEFAULT 'resolver'
);
CREATE INDEX identity_link_log_identity ON identity_link_log (type, scope, value, seq);
CREATE INDEX identity_link_log_customer ON identity_link_log (customer_id, seq);

-- Evidence that two identities belong together: they arrived in one interaction, or an agent
-- linked them. Splits recompute customers as connected components of this graph.
CREATE TABLE identity_edges (
    a_type text NOT NULL, a_scope text NOT NULL, a_value text NOT NULL,
    b_type text NOT NULL, b_scope text NOT NULL, b_value text NOT NULL,
    event_id   uuid,
    source     text NOT NULL DEFAULT 'event',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (a_type, a_scope, a_value, b_type, b_scope, b_value)
);
CREATE INDEX identity_edges_b ON identity_edges (b_type, b_scope, b_value);

-- Pairs an agent separated: no automatic rule may join them again.
CREATE TABLE identity_separations (
    a_type text NOT NULL, a_scope text NOT NULL, a_value text NOT NULL,
    b_type text NOT NULL, b_scope text NOT NULL, b_value text NOT NULL,
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (a_type, a_scope, a_value, b_type, b_scope, b_value)
);

-- Which customers each identity value was seen with (to detect shared values).
CREATE TABLE identity_sightings (
    type        text NOT NULL,
    scope       text NOT NULL,
    value       text NOT NULL,
    customer_id uuid NOT NULL,
    first_event uuid,
    PRIMARY KEY (type, scope, value, customer_id)
);

-- The CRM profile; field_times records when each field was last set (for survivorship).
CREATE TABLE customer_profiles (
    customer_id       uuid PRIMARY KEY REFERENCES customers (id),
    name              text,
    birth_date        date,
    language          text,
    preferred_channel text,
    addresses         jsonb NOT NULL DEFAULT '[]',
    attributes        jsonb NOT NULL DEFAULT '{}',
    field_times       jsonb NOT NULL DEFAULT '{}',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
