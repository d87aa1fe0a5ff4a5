-- Crypto-shredding of raw records (issue #28 item 6): the channel adapters seal what they
-- publish before anyone knows the customer (interactions, dead letters) with the public key of
-- the UTC day (schemas/sealing.py's period scheme, announced on omnihub.periodkeys.v1). The
-- private key stays here; it is deleted OMNIHUB_RAW_RECORD_DAYS after its day, and with it
-- every raw record of that day becomes unreadable, an erased customer's too.
CREATE TABLE period_keys (
    period      text PRIMARY KEY CHECK (period ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'),
    private_key bytea NOT NULL CHECK (octet_length(private_key) = 32),
    public_key  bytea NOT NULL CHECK (octet_length(public_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);
