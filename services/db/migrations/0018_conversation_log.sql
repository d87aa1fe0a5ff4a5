-- What session channels' clients were shown (channels/base/conversation.py's ConversationLog):
-- each conversation's messages, numbered in the order the hub took them, so a web chat widget
-- that reconnects gets what came after the last number it saw, each message once. The web
-- processes append what visitors send, the dispatcher what agents reply. Erasure deletes a
-- customer's conversations (their identity values).
CREATE TABLE conversation_heads (
    adapter      text NOT NULL CHECK (adapter <> ''),
    conversation text NOT NULL CHECK (conversation <> ''),
    last_seq     bigint NOT NULL,
    PRIMARY KEY (adapter, conversation)
);
CREATE TABLE conversation_log (
    adapter      text NOT NULL,
    conversation text NOT NULL,
    seq          bigint NOT NULL,
    entry_id     uuid NOT NULL,
    entry        jsonb NOT NULL CHECK (jsonb_typeof(entry) = 'object'),
    logged_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (adapter, conversation, seq),
    UNIQUE (adapter, conversation, entry_id)
);
