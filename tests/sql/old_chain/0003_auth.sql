-- skiplock 0003: API authentication (tokens) and the audit log.
--
-- An API token is `sk_<random>`; only its sha256 (hex) is stored, so a copy of this
-- table lets nobody in. The secret is shown once, by whoever created it. JWTs are
-- verified by the API alone (nothing stored). Every mutating API call leaves one row in
-- audit_log: who, what, when, with which answer.

CREATE TYPE skiplock.token_scope AS ENUM ('read', 'write', 'admin');

CREATE TABLE skiplock.api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    scope         skiplock.token_scope NOT NULL,
    -- A glob over queue names (`*` any run, `?` one character), e.g. `emails*`;
    -- NULL: every queue. Same alphabet as queue names, plus the two wildcards.
    queue_pattern text,
    token_hash    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT name_is_valid CHECK (name ~ '^[A-Za-z0-9_.:@-]{1,100}$'),
    CONSTRAINT queue_pattern_is_valid CHECK (queue_pattern ~ '^[A-Za-z0-9_.:*?-]{1,64}$'),
    CONSTRAINT token_hash_is_sha256 CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT name_is_unique UNIQUE (name),
    CONSTRAINT token_hash_is_unique UNIQUE (token_hash)
);

CREATE TABLE skiplock.audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    -- The token's name, or `jwt:<sub>` for a JWT.
    actor  text NOT NULL,
    -- Method and path, e.g. `POST /api/v1/jobs/5/cancel`.
    action text NOT NULL,
    -- What it acted on when the route names it (a job id, a queue), else NULL.
    target text,
    status integer NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

-- `skiplock audit` and GET /api/v1/audit read newest first; retention deletes by age.
CREATE INDEX audit_log_at_idx ON skiplock.audit_log (at);

-- queue_matches: true when queue p_queue falls under the token pattern p_pattern (a glob:
-- `*` any run of characters, `?` exactly one); a NULL pattern matches every queue.
-- Queue names may hold `_`, which LIKE treats as a wildcard, so it is escaped first.
-- Takes no locks; IMMUTABLE so it can sit in an index or a WHERE on a big scan.
CREATE FUNCTION skiplock.queue_matches(p_queue text, p_pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_pattern IS NULL OR p_queue LIKE replace(replace(replace(replace(replace(
        p_pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'), '?', '_')
$$;

-- create_api_token: store a token (its sha256 hex, never the secret) under a unique
-- name. With p_replace, a token of the same name (revoked or not) is overwritten: new
-- hash, scope and queues, created now, never used, not revoked — `skiplock dev` uses
-- this for its `dev` token. Name, pattern and hash are checked by the table's
-- constraints (check_violation). A concurrent create of the same name waits on the
-- unique index. Returns true when stored, false when the name is taken (p_replace off).
CREATE FUNCTION skiplock.create_api_token(
    p_name text,
    p_scope skiplock.token_scope,
    p_queues text,
    p_hash text,
    p_replace boolean DEFAULT false
) RETURNS boolean
LANGUAGE sql AS $$
    WITH stored AS (
        INSERT INTO skiplock.api_tokens AS t (name, scope, queue_pattern, token_hash)
        VALUES (p_name, p_scope, p_queues, p_hash)
        ON CONFLICT (name) DO UPDATE
            SET scope = excluded.scope,
                queue_pattern = excluded.queue_pattern,
                token_hash = excluded.token_hash,
                created_at = now(),
                last_used_at = NULL,
                revoked_at = NULL
            WHERE coalesce(p_replace, false)
        RETURNING 1)
    SELECT EXISTS (SELECT FROM stored)
$$;

-- revoke_api_token: a revoked token stops working at its next request (lookups skip
-- it); the row stays for the audit trail and the name stays taken. Locks the row by the
-- UPDATE. Returns false when no live token has this name (unknown or already revoked).
CREATE FUNCTION skiplock.revoke_api_token(p_name text, p_now timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE sql AS $$
    WITH revoked AS (
        UPDATE skiplock.api_tokens t SET revoked_at = coalesce(p_now, now())
        WHERE t.name = p_name AND t.revoked_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT FROM revoked)
$$;

-- find_api_token: the live (not revoked) token whose hash is p_hash, as (name, scope,
-- queue_pattern, token_hash); no row when none. Records last_used_at, but at most once
-- a minute per token, so a busy client does not cost a row write (and a dead tuple)
-- per request. The UPDATE locks only that row: a concurrent lookup of the same token
-- waits for it, then finds last_used_at fresh and reads the row through the second
-- branch instead.
CREATE FUNCTION skiplock.find_api_token(p_hash text, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (name text, scope text, queue_pattern text, token_hash text)
LANGUAGE sql AS $$
    WITH touched AS (
        UPDATE skiplock.api_tokens t SET last_used_at = coalesce(p_now, now())
        WHERE t.token_hash = p_hash
          AND t.revoked_at IS NULL
          AND (t.last_used_at IS NULL
               OR t.last_used_at < coalesce(p_now, now()) - interval '1 minute')
        RETURNING t.name, t.scope::text, t.queue_pattern, t.token_hash)
    SELECT * FROM touched
    UNION ALL
    SELECT t.name, t.scope::text, t.queue_pattern, t.token_hash
    FROM skiplock.api_tokens t
    WHERE t.token_hash = p_hash AND t.revoked_at IS NULL
      AND NOT EXISTS (SELECT FROM touched)
$$;

-- record_audit: append one audit row and return its id. Takes no locks beyond the
-- INSERT's; never fails on a NULL target or detail.
CREATE FUNCTION skiplock.record_audit(
    p_actor text,
    p_action text,
    p_target text,
    p_status integer,
    p_detail jsonb DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    INSERT INTO skiplock.audit_log (actor, action, target, status, detail)
    VALUES (p_actor, p_action, p_target, p_status, coalesce(p_detail, '{}'))
    RETURNING id
$$;
