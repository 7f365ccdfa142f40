-- API authentication and the audit log: tokens (stored as sha256 only), users who log
-- in with a password (stored as an argon2 hash only, made by the caller), and one audit
-- row per mutating API call or login, with its retention.

-- create_api_token: store a token (its sha256 hex, never the secret) under a unique
-- name. With p_replace, a token of the same name (revoked or not) is overwritten: new
-- hash, scope and queues, created now, never used, not revoked — `skiplock dev` uses
-- this for its `dev` token. Name, pattern and hash are checked by the table's
-- constraints (check_violation). A concurrent create of the same name waits on the
-- unique index. Returns true when stored, false when the name is taken (p_replace off).
CREATE OR REPLACE FUNCTION skiplock.create_api_token(
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
CREATE OR REPLACE FUNCTION skiplock.revoke_api_token(p_name text, p_now timestamptz DEFAULT NULL)
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
CREATE OR REPLACE FUNCTION skiplock.find_api_token(p_hash text, p_now timestamptz DEFAULT NULL)
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

-- create_user: store a user who may log in (POST /api/v1/login) with the password whose
-- argon2 hash is p_password_hash; the tokens a login gives carry p_scope and p_queues
-- (a queue glob, NULL for every queue). Name, pattern and hash are checked by the
-- table's constraints (check_violation). A concurrent create of the same name waits on
-- the unique index. Returns true when stored, false when the name is taken.
CREATE OR REPLACE FUNCTION skiplock.create_user(
    p_name text,
    p_password_hash text,
    p_scope skiplock.token_scope,
    p_queues text DEFAULT NULL
) RETURNS boolean
LANGUAGE sql AS $$
    WITH stored AS (
        INSERT INTO skiplock.users (name, password_hash, scope, queue_pattern)
        VALUES (p_name, p_password_hash, p_scope, p_queues)
        ON CONFLICT (name) DO NOTHING
        RETURNING 1)
    SELECT EXISTS (SELECT FROM stored)
$$;

-- set_user_password: replace the password hash of user p_name (disabled or not; it
-- does not enable the user). Locks the row by the UPDATE. Returns false when no user
-- has this name.
CREATE OR REPLACE FUNCTION skiplock.set_user_password(p_name text, p_password_hash text)
RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.users u SET password_hash = p_password_hash
        WHERE u.name = p_name
        RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

-- disable_user: user p_name can no longer log in (find_user skips it); the row and the
-- name stay. Tokens a login already gave stay valid until they expire. Locks the row by
-- the UPDATE. Returns false when no enabled user has this name.
CREATE OR REPLACE FUNCTION skiplock.disable_user(p_name text, p_now timestamptz DEFAULT NULL)
RETURNS boolean
LANGUAGE sql AS $$
    WITH disabled AS (
        UPDATE skiplock.users u SET disabled_at = coalesce(p_now, now())
        WHERE u.name = p_name AND u.disabled_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT FROM disabled)
$$;

-- enable_user: user p_name can log in again after disable_user. Locks the row by the
-- UPDATE. Returns false when no disabled user has this name.
CREATE OR REPLACE FUNCTION skiplock.enable_user(p_name text)
RETURNS boolean
LANGUAGE sql AS $$
    WITH enabled AS (
        UPDATE skiplock.users u SET disabled_at = NULL
        WHERE u.name = p_name AND u.disabled_at IS NOT NULL
        RETURNING 1)
    SELECT EXISTS (SELECT FROM enabled)
$$;

-- delete_user: remove user p_name, enabled or not; the audit log keeps its logins.
-- Returns false when no user has this name.
CREATE OR REPLACE FUNCTION skiplock.delete_user(p_name text)
RETURNS boolean
LANGUAGE sql AS $$
    WITH deleted AS (
        DELETE FROM skiplock.users u WHERE u.name = p_name
        RETURNING 1)
    SELECT EXISTS (SELECT FROM deleted)
$$;

-- find_user: the enabled user p_name, as (name, password_hash, scope, queue_pattern),
-- for a login to check the password against; no row when the name is unknown or the
-- user is disabled. Reads only, takes no lock.
CREATE OR REPLACE FUNCTION skiplock.find_user(p_name text)
RETURNS TABLE (name text, password_hash text, scope text, queue_pattern text)
LANGUAGE sql STABLE AS $$
    SELECT u.name, u.password_hash, u.scope::text, u.queue_pattern
    FROM skiplock.users u
    WHERE u.name = p_name AND u.disabled_at IS NULL
$$;

-- record_user_login: note a successful login of user p_name at p_now (default now());
-- with p_password_hash, also store that hash (the same password, rehashed because the
-- hashing parameters changed). Locks the row by the UPDATE. Returns false when no
-- enabled user has this name (disabled or deleted since the password was checked).
CREATE OR REPLACE FUNCTION skiplock.record_user_login(
    p_name text, p_password_hash text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS boolean
LANGUAGE sql AS $$
    WITH logged_in AS (
        UPDATE skiplock.users u
        SET last_login_at = coalesce(p_now, now()),
            password_hash = coalesce(p_password_hash, u.password_hash)
        WHERE u.name = p_name AND u.disabled_at IS NULL
        RETURNING 1)
    SELECT EXISTS (SELECT FROM logged_in)
$$;

-- record_audit: append one audit row and return its id. Takes no locks beyond the
-- INSERT's; never fails on a NULL target or detail.
CREATE OR REPLACE FUNCTION skiplock.record_audit(
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

-- prune_audit_log: retention for the audit log. Delete up to p_limit audit entries
-- written more than p_older_than before p_now (default now()), oldest first. Rows are
-- taken with SKIP LOCKED, so several pruners never wait on each other; call again while
-- it returns p_limit. Returns how many were deleted.
CREATE OR REPLACE FUNCTION skiplock.prune_audit_log(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    deleted integer;
BEGIN
    -- A NULL or negative age would read as "everything" or "the future": refuse both.
    IF p_older_than IS NULL OR p_older_than < interval '0' THEN
        RAISE EXCEPTION 'prune_audit_log: p_older_than must be an interval >= 0, got %',
            coalesce(p_older_than::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_limit IS NULL OR p_limit < 1 THEN
        RAISE EXCEPTION 'prune_audit_log: p_limit must be at least 1, got %',
            coalesce(p_limit::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH gone AS (
        DELETE FROM skiplock.audit_log a
        WHERE a.id = ANY (ARRAY(
            SELECT o.id FROM skiplock.audit_log o
            WHERE o.at < coalesce(p_now, now()) - p_older_than
            ORDER BY o.at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED))
        RETURNING 1)
    SELECT count(*)::integer INTO deleted FROM gone;
    RETURN deleted;
END
$$;
