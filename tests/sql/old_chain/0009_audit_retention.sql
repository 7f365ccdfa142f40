-- skiplock 0009: retention for the API's audit log (one row per mutating call, kept
-- until now forever).

-- prune_audit_log: delete up to p_limit audit entries written more than p_older_than
-- before p_now (default now()), oldest first. Rows are taken with SKIP LOCKED, so
-- several pruners never wait on each other; call again while it returns p_limit.
-- Returns how many were deleted.
CREATE FUNCTION skiplock.prune_audit_log(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
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
