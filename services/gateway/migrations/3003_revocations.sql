-- Token revocations (`RevokeTokens`): one row per revocation, append-only (the history of who
-- revoked whom, and when). The cut-off in force for a subject is the latest row's; every
-- gateway replica reads the rows of the last `auth.max_token_ttl_secs` (older cut-offs can
-- only refuse tokens that have expired anyway).
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.revocations (
    id          BIGSERIAL PRIMARY KEY,
    -- Empty: every tenant.
    tenant      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    -- Tokens of the subject issued (iat) before this are refused.
    cut_off     TIMESTAMPTZ NOT NULL,
    revoked_by  TEXT NOT NULL,
    revoked_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX revocations_cut_off ON auth.revocations (cut_off);

CREATE FUNCTION auth.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auth.revocations is append-only';
END;
$$;

CREATE TRIGGER revocations_append_only BEFORE UPDATE OR DELETE ON auth.revocations
    FOR EACH ROW EXECUTE FUNCTION auth.refuse_change();
