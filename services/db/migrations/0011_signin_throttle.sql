-- Sign-in throttling per (username, source address) and per source address, with growing
-- delays instead of a lockout anyone could trigger; and the sign-in events admins can see.
-- Replaces console_login_failures (a per-username count that was read and written in two
-- statements, so concurrent attempts raced past the limit).

DROP TABLE console_login_failures;

-- One row per key: 'user:<address> <username>' or 'addr:<address>'. Each attempt is counted
-- (by one INSERT ... ON CONFLICT DO UPDATE, before its password is checked) and a success
-- takes it back; from the limit on, the next attempt must wait until wait_until.
CREATE TABLE console_signin_throttle (
    key        text PRIMARY KEY,
    attempts   integer NOT NULL,
    last_at    timestamptz NOT NULL,
    wait_until timestamptz NOT NULL DEFAULT '-infinity',
    allowed    boolean NOT NULL DEFAULT true           -- the last attempt's verdict
);
CREATE INDEX console_signin_throttle_last ON console_signin_throttle (last_at);

-- Sign-in outcomes: who (the username as typed), from where, when. Never a password.
CREATE TABLE console_signin_events (
    seq      bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    address  text NOT NULL,
    outcome  text NOT NULL CHECK (outcome IN ('success', 'failure', 'throttled'))
);
CREATE INDEX console_signin_events_at ON console_signin_events (at);
