-- Crypto-shredding (issue #28 item 6): each customer's records on the department topics are
-- sealed with the customer's own key (schemas/sealing.py). Erasing the customer deletes the
-- row, and with it every copy of those records becomes unreadable, whatever the broker keeps.
-- key_id is what a record names (x-omnihub-key-id); departments fetch keys by it
-- (GET /v1/keys/{key_id}, scope keys:read).
CREATE TABLE customer_keys (
    customer_id uuid PRIMARY KEY,
    key_id      uuid NOT NULL UNIQUE,
    key         bytea NOT NULL CHECK (octet_length(key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
