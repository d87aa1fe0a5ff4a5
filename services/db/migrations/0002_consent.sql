-- Consent per customer, channel ('*' for all channels) and purpose (service, marketing).
-- The newest statement wins: a change older than the stored one is ignored.
CREATE TABLE consents (
    customer_id  uuid NOT NULL REFERENCES customers (id),
    channel      text NOT NULL,
    purpose      text NOT NULL CHECK (purpose IN ('service', 'marketing')),
    granted      boolean NOT NULL,
    reason       text NOT NULL DEFAULT '',
    source_event uuid,
    changed_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, channel, purpose)
);
