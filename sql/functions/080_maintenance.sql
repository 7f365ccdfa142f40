-- Maintenance, run by every worker (no leader: SKIP LOCKED throughout): rescue jobs
-- whose lease expired, expire jobs past their deadline, prune the history and the
-- unique keys.

-- rescue_expired_jobs: fail running jobs whose lease expired (their worker died or lost
-- the database) through fail_jobs, so the attempt counts: a job that kills its worker
-- every time ends in the dead letters. Safe to run from every worker at once: rows are
-- taken with SKIP LOCKED, and fail_jobs re-checks each token. Up to p_limit per call.
-- The jobs it rescued are counted in the job counters (event 'rescued', kept as totals
-- only). Returns (id, status) as fail_jobs does.
CREATE OR REPLACE FUNCTION skiplock.rescue_expired_jobs(
    p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_owner record;
BEGIN
    FOR v_owner IN
        SELECT e.worker_id, array_agg(e.id) AS ids, array_agg(e.attempt) AS attempts,
               array_agg(e.queue::text) AS queues, array_agg(e.task::text) AS tasks
        FROM (SELECT j.id, j.worker_id, j.attempt, j.queue, j.task FROM skiplock.jobs j
              WHERE j.state = 'running' AND j.lease_expires_at < v_now
              LIMIT p_limit FOR UPDATE SKIP LOCKED) e
        GROUP BY e.worker_id
    LOOP
        RETURN QUERY
        WITH failed AS MATERIALIZED (
            SELECT f.id, f.status FROM skiplock.fail_jobs(
                v_owner.worker_id, v_owner.ids, v_owner.attempts,
                array_fill(jsonb_build_object('error',
                                              'lease expired: the worker stopped renewing it',
                                              'type', 'LeaseExpired'),
                           ARRAY[cardinality(v_owner.ids)]),
                v_now) f
        ), counted AS (
            INSERT INTO skiplock.job_counts (queue, task, event, n, minute)
            SELECT r.queue, r.task, 'rescued', count(*), NULL
            FROM failed f
            JOIN unnest(v_owner.ids, v_owner.queues, v_owner.tasks) AS r(id, queue, task)
                ON r.id = f.id
            GROUP BY r.queue, r.task
        )
        SELECT f.id, f.status FROM failed f;
    END LOOP;
END
$$;

-- expire_jobs: end, as `expired`, up to p_limit jobs waiting to start (queued, scheduled,
-- retrying, waiting) whose deadline (expires_at) has passed; claim_jobs already skips
-- them. Running jobs are left alone. Rows are taken with SKIP LOCKED: safe from every
-- worker at once. Returns the expired ids.
CREATE OR REPLACE FUNCTION skiplock.expire_jobs(p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT unnest(skiplock._finish_jobs(NULL, ARRAY(
        SELECT j.id FROM skiplock.jobs j
        WHERE j.expires_at <= coalesce(p_now, now()) AND j.state <> 'running'
        ORDER BY j.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED), NULL, 'expired', NULL, coalesce(p_now, now())))
$$;

-- prune_job_history: retention. Delete up to p_limit finished jobs (succeeded, cancelled,
-- expired) that finished more than p_older_than ago, oldest first. Rows are taken with
-- SKIP LOCKED, so every worker may prune at once without a leader and without blocking
-- each other; call again while it returns p_limit. Dead letters are kept until purged.
-- Returns how many were deleted.
CREATE OR REPLACE FUNCTION skiplock.prune_job_history(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM skiplock.job_history h
        WHERE h.id = ANY (ARRAY(
            SELECT o.id FROM skiplock.job_history o
            WHERE o.finished_at < coalesce(p_now, now()) - p_older_than
            ORDER BY o.finished_at
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED))
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- prune_unique_keys: forget unique keys whose hold period is over (enqueue would
-- overwrite them anyway; this keeps the table from growing). Returns how many.
CREATE OR REPLACE FUNCTION skiplock.prune_unique_keys(p_now timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM skiplock.unique_keys k WHERE k.holds_until < coalesce(p_now, now())
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
