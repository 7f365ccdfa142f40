-- API authentication and the audit log: tokens (stored as sha256 only), and one audit
-- row per mutating API call, with its retention.

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
