-- A revoked token stops working at once: every API process listens on omnihub_tokens (the
-- console's live feed connection) and drops the revoked token's cached answer. Without it a
-- revoked token kept working for up to the cache's 30 s (services/api/auth.py CACHE_SECONDS).
CREATE FUNCTION omnihub_token_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('omnihub_tokens', NEW.token_hash);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_revoked
    AFTER UPDATE OF revoked_at ON api_tokens
    FOR EACH ROW WHEN (NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL)
    EXECUTE FUNCTION omnihub_token_revoked();
