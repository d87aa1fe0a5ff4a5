-- What source adapters remember across restarts (channels/base/state.py's SourceState): an
-- IMAP folder's UIDVALIDITY and last UID imported, a long-poll's offset. Kept here, not in
-- the adapter's process, so a restart or a move to another machine resumes where it was.
-- One row per (adapter, key); a value is a small JSON object, replaced whole on each save.
CREATE TABLE source_state (
    adapter    text NOT NULL CHECK (adapter <> ''),
    key        text NOT NULL CHECK (key <> ''),
    value      jsonb NOT NULL CHECK (jsonb_typeof(value) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (adapter, key)
);
