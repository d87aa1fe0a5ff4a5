-- Edits and deletions a sender made to an earlier message (Interaction.revises): applied to
-- the original's timeline row (its text, attributes edited_at / deleted_at), the earlier
-- version kept here, in order; deleted with the row (erasure deletes the customer's rows).
-- previous_text is NULL for a deletion unless the hub keeps deleted text for admins.
CREATE TABLE timeline_revisions (
    event_id       uuid NOT NULL REFERENCES timeline (event_id) ON DELETE CASCADE,
    revision_id    uuid NOT NULL,
    action         text NOT NULL CHECK (action IN ('edit', 'delete')),
    revised_at     timestamptz NOT NULL,
    previous_text  text,
    PRIMARY KEY (event_id, revision_id)
);
