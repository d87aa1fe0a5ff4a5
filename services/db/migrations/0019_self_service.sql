-- Customers' self-service (/me): one-time sign-in links, customers' own sessions (apart from
-- the console's), the link requests counted for rate limits, and erasure requests an admin
-- confirms. Tokens and session ids are stored as SHA-256 digests only.
CREATE TABLE self_service_links (
    token_hash  text PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    sent_to     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX self_service_links_customer ON self_service_links (customer_id);

CREATE TABLE self_service_sessions (
    id_hash     text PRIMARY KEY,
    customer_id uuid NOT NULL REFERENCES customers (id),
    csrf_token  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX self_service_sessions_customer ON self_service_sessions (customer_id);

-- One row a link request, by the address asked for (a digest) and the asker's IP address.
CREATE TABLE self_service_link_requests (
    address_hash text NOT NULL,
    source       text NOT NULL,
    at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX self_service_link_requests_address ON self_service_link_requests (address_hash, at);
CREATE INDEX self_service_link_requests_source ON self_service_link_requests (source, at);

CREATE TABLE erasure_requests (
    id           uuid PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (id),
    requested_at timestamptz NOT NULL DEFAULT now(),
    reason       text NOT NULL DEFAULT '',
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'confirmed', 'declined')),
    decided_by   text,
    decided_at   timestamptz
);
-- At most one open request a customer.
CREATE UNIQUE INDEX erasure_requests_open ON erasure_requests (customer_id) WHERE status = 'pending';
