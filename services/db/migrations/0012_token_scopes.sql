-- Scoped API tokens (issue #28): what a token may do (scopes, one per /v1 route family and per
-- channel CLIENT route) and which channels it may post interactions as. services/api/auth.py
-- names the scopes (Scope) and checks them on every route; admin tokens hold every scope and
-- channel whatever is stored here.
--
-- A token created without these columns (an older process during a rolling upgrade) gets no
-- scope and only the API channel: it is refused rather than trusted.
ALTER TABLE api_tokens
    ADD COLUMN scopes   text[] NOT NULL DEFAULT '{}',
    ADD COLUMN channels text[] NOT NULL DEFAULT '{api}';

-- Existing tokens keep exactly what their role could do before (auth.ROLE_SCOPES), on every
-- channel, so nothing breaks; new tokens get least privilege (omnihub token create).
UPDATE api_tokens SET
    scopes = CASE role
        WHEN 'admin' THEN ARRAY['interactions:write', 'customers:read', 'messages:send',
                                'identity:write', 'privacy:export', 'privacy:delete']
        WHEN 'agent' THEN ARRAY['interactions:write', 'customers:read', 'messages:send',
                                'identity:write', 'privacy:export']
        ELSE ARRAY['interactions:write', 'customers:read', 'messages:send']
    END,
    channels = ARRAY['email', 'sms', 'voice', 'webchat', 'messenger', 'instagram', 'whatsapp',
                     'x', 'telegram', 'api', 'manual'];
