-- Maintenance, run by every worker (no leader: SKIP LOCKED throughout): rescue jobs
-- whose lease expired, expire jobs past their deadline, prune the history (or archive
-- it: hand back what is pruned) and the unique keys; and export the finished jobs.

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

-- _old_history_ids (internal): up to p_limit finished jobs (succeeded, cancelled,
-- expired) that finished more than p_older_than ago, oldest first, locked with SKIP
-- LOCKED: every worker may prune at once, without a leader and without waiting for
-- another (nor for an archiver holding its rows until they are stored).
CREATE OR REPLACE FUNCTION skiplock._old_history_ids(
    p_older_than interval, p_limit integer, p_now timestamptz
) RETURNS SETOF bigint
LANGUAGE sql
AS $$
    SELECT o.id FROM skiplock.job_history o
    WHERE o.finished_at < coalesce(p_now, now()) - p_older_than
    ORDER BY o.finished_at
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
$$;

-- archive_job_history: retention that hands back what it deletes. Deletes up to p_limit
-- finished jobs (succeeded, cancelled, expired) that finished more than p_older_than ago,
-- oldest first, and returns them oldest first in export_finished_jobs' columns. Rows are
-- taken with SKIP LOCKED, so every worker may prune at once without a leader and without
-- blocking each other. An archiver writes the rows out and commits only once they are
-- safely stored: a rollback keeps every row, so no row leaves unarchived. Returns no
-- rows when none is that old. Dead letters are kept until purged. The jobs' log lines
-- and webhook delivery links go with them (the statement triggers _job_logs_deleted and
-- _webhook_deliveries_deleted).
CREATE OR REPLACE FUNCTION skiplock.archive_job_history(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (
    id bigint, task text, args jsonb, queue text, priority smallint, status text,
    attempt integer, max_attempts integer, retry_policy jsonb, timeout interval, tags text[],
    meta jsonb, unique_key text, expires_at timestamptz, depends_on bigint[], errors jsonb,
    progress jsonb, result jsonb, created_at timestamptz, started_at timestamptz,
    finished_at timestamptz, worker_id uuid, callback_url text
)
LANGUAGE sql
AS $$
    WITH gone AS (
        DELETE FROM skiplock.job_history h
        WHERE h.id = ANY (ARRAY(SELECT skiplock._old_history_ids(p_older_than, p_limit, p_now)))
        RETURNING h.*)
    SELECT g.id, g.task, g.args, g.queue, g.priority, g.status::text, g.attempt, g.max_attempts,
           g.retry_policy, g.timeout, g.tags, g.meta, g.unique_key, g.expires_at, g.depends_on,
           g.errors, g.progress, g.result, g.created_at, g.started_at, g.finished_at,
           g.worker_id, g.callback_url
    FROM gone g
    ORDER BY g.finished_at, g.id
$$;

-- prune_job_history: retention, what workers run: archive_job_history's deletion, the
-- rows counted instead of read back and sorted (a third less time a batch, which every
-- finished job costs once). Call again while it returns p_limit. Returns how many were
-- deleted.
CREATE OR REPLACE FUNCTION skiplock.prune_job_history(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM skiplock.job_history h
        WHERE h.id = ANY (ARRAY(SELECT skiplock._old_history_ids(p_older_than, p_limit, p_now)))
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- export_finished_jobs: the finished jobs that finished before p_before, oldest first,
-- for an export: the history (succeeded, cancelled, expired) and, with p_dead_letters,
-- the dead letters (status failed, finished_at their failed_at, result null); only
-- p_queue's when given. Reads under the caller's snapshot and locks nothing, so a long
-- export holds up no worker. No SET clause and STABLE: the planner inlines it, so a
-- cursor over it streams rows from the finished_at indexes instead of building the set.
CREATE OR REPLACE FUNCTION skiplock.export_finished_jobs(
    p_before timestamptz, p_queue text DEFAULT NULL, p_dead_letters boolean DEFAULT false
) RETURNS TABLE (
    id bigint, task text, args jsonb, queue text, priority smallint, status text,
    attempt integer, max_attempts integer, retry_policy jsonb, timeout interval, tags text[],
    meta jsonb, unique_key text, expires_at timestamptz, depends_on bigint[], errors jsonb,
    progress jsonb, result jsonb, created_at timestamptz, started_at timestamptz,
    finished_at timestamptz, worker_id uuid, callback_url text
)
LANGUAGE sql
STABLE
AS $$
    SELECT * FROM (
        SELECT h.id, h.task, h.args, h.queue, h.priority, h.status::text, h.attempt,
               h.max_attempts, h.retry_policy, h.timeout, h.tags, h.meta, h.unique_key,
               h.expires_at, h.depends_on, h.errors, h.progress, h.result, h.created_at,
               h.started_at, h.finished_at, h.worker_id, h.callback_url
        FROM skiplock.job_history h
        WHERE h.finished_at < p_before AND (p_queue IS NULL OR h.queue = p_queue)
        UNION ALL
        SELECT d.id, d.task, d.args, d.queue, d.priority, 'failed', d.attempt,
               d.max_attempts, d.retry_policy, d.timeout, d.tags, d.meta, d.unique_key,
               d.expires_at, d.depends_on, d.errors, d.progress, NULL, d.created_at,
               d.started_at, d.failed_at, d.worker_id, d.callback_url
        FROM skiplock.dead_jobs d
        WHERE p_dead_letters AND d.failed_at < p_before AND (p_queue IS NULL OR d.queue = p_queue)
    ) f
    ORDER BY f.finished_at
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
