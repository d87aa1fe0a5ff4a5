-- A customer's address the provider said cannot receive (a hard bounce), with the provider's
-- words: shown on the profile and beside the reply form. Set by the delivery agent from
-- delivery states marked `undeliverable` (the newest report wins).
ALTER TABLE identities
    ADD COLUMN undeliverable_since  timestamptz,
    ADD COLUMN undeliverable_reason text;
