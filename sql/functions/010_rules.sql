-- Rules: the pure helpers other functions build on. Whether a retry policy is valid, how
-- long a failed job waits before its next attempt, and whether a queue falls under a
-- token's queue glob.

-- retry_policy_is_valid: whether p_policy is a retry policy the retry_policy domain
-- accepts (the rule is the domain's CHECK, in sql/migrations/0001_baseline.sql, and
-- only there); NULL for NULL.
CREATE OR REPLACE FUNCTION skiplock.retry_policy_is_valid(p_policy jsonb) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_policy IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM p_policy::skiplock.retry_policy;
    RETURN true;
EXCEPTION WHEN check_violation OR invalid_text_representation THEN
    RETURN false;
END
$$;

-- retry_delay: the delay before attempt p_attempt + 1, after attempt p_attempt
-- (1-based) failed. exponential: base * 2^(attempt-1); linear: base * attempt; fixed:
-- base. Capped at max_delay, then up to `jitter` of it is taken off at random so that a
-- burst of failures does not come back as a burst.
CREATE OR REPLACE FUNCTION skiplock.retry_delay(p_policy jsonb, p_attempt integer) RETURNS interval
LANGUAGE sql VOLATILE AS $$
    SELECT make_interval(secs => least(
               CASE coalesce(p_policy->>'kind', 'exponential')
                   WHEN 'fixed' THEN base
                   WHEN 'linear' THEN base * p_attempt
                   ELSE base * power(2::float8, least(greatest(p_attempt, 1) - 1, 60))
               END, max_delay) * (1 - jitter * random()))
    FROM (SELECT coalesce((p_policy->>'base')::float8, 1) AS base,
                 coalesce((p_policy->>'max_delay')::float8, 3600) AS max_delay,
                 coalesce((p_policy->>'jitter')::float8, 0.1) AS jitter) d
$$;

-- queue_matches: true when queue p_queue falls under the token pattern p_pattern (a glob:
-- `*` any run of characters, `?` exactly one); a NULL pattern matches every queue.
-- Queue names may hold `_`, which LIKE treats as a wildcard, so it is escaped first.
-- Takes no locks; IMMUTABLE so it can sit in an index or a WHERE on a big scan.
CREATE OR REPLACE FUNCTION skiplock.queue_matches(p_queue text, p_pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_pattern IS NULL OR p_queue LIKE replace(replace(replace(replace(replace(
        p_pattern, '\', '\\'), '%', '\%'), '_', '\_'), '*', '%'), '?', '_')
$$;
