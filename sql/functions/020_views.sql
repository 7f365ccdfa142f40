-- Inspection views: every job with its status in the words users see, the dead
-- letters, per-queue stats and the workers. They read only tables, and functions
-- further on read all_jobs, so they come first. CREATE OR REPLACE VIEW can only add
-- columns at the end: a new column goes last, and none is removed or renamed here.

-- all_jobs: every job, wherever it lives (jobs, job_history, dead_jobs), with its
-- status in the words users see. Reads only. on_dependency_failure is kept only in the
-- hot table: a finished job waits on nothing, and shows NULL. The hot table's domain
-- columns are cast to the type the other branches have: a filter on the view reaches
-- each table (and its indexes) only through columns of one type in every branch.
CREATE OR REPLACE VIEW skiplock.all_jobs AS
SELECT id, task::text, args::jsonb, queue::text, priority,
       CASE WHEN state = 'running' THEN 'running'
            WHEN state = 'waiting' THEN 'waiting'
            WHEN attempt > 0 THEN 'retrying'
            WHEN run_at > now() THEN 'scheduled'
            ELSE 'queued' END AS status,
       attempt, max_attempts, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, progress, NULL::jsonb AS result,
       errors -> -1 AS last_error, errors, tags, meta::jsonb, retry_policy::jsonb, timeout,
       worker_id,
       lease_expires_at, cancel_requested_at, unique_key, expires_at, depends_on,
       callback_url::text AS callback_url, on_dependency_failure::text AS on_dependency_failure
FROM skiplock.jobs
UNION ALL
SELECT id, task, args, queue, priority, status::text, attempt, max_attempts, NULL,
       created_at, started_at, finished_at, progress, result, errors -> -1, errors, tags,
       meta, retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on,
       callback_url, NULL
FROM skiplock.job_history
UNION ALL
SELECT id, task, args, queue, priority, 'failed', attempt, max_attempts, NULL, created_at,
       started_at, failed_at, progress, NULL, errors -> -1, errors, tags, meta,
       retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on,
       callback_url, NULL
FROM skiplock.dead_jobs;

-- dead_letters: the dead letters with their last error.
CREATE OR REPLACE VIEW skiplock.dead_letters AS
SELECT id, task, queue, attempt, max_attempts, errors -> -1 ->> 'error' AS last_error,
       failed_at, args, errors, created_at
FROM skiplock.dead_jobs;

-- _estimated_rows: the planner's estimate of the rows a query returns (EXPLAIN; the
-- query is not run). For counts past a cap, where an exact count would read them all.
CREATE OR REPLACE FUNCTION skiplock._estimated_rows(p_query text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || p_query INTO v_plan;
    RETURN (v_plan -> 0 -> 'Plan' ->> 'Plan Rows')::float8::bigint;
END
$$;

-- queue_counts: per queue, its jobs by status and its settings (limits, defaults, order
-- among queues), reading a bounded number of rows however many jobs wait. Pending
-- statuses are counted in the hot table: per queue at most p_cap + 1 entries of the
-- claim index (queued, scheduled, retrying), and at most p_cap + 1 running and waiting
-- jobs over all queues; a count past the cap is the planner's estimate (never below
-- what was counted) and its status is listed in `estimated`. Finished statuses are
-- totals since install, kept by triggers. p_queues: only these queues (NULL: all). The
-- queue_stats view is this for all queues at the default cap.
CREATE OR REPLACE FUNCTION skiplock.queue_counts(
    p_queues text[] DEFAULT NULL, p_cap integer DEFAULT 10000, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (
    queue skiplock.queue_name, paused boolean, max_running integer, rate_limit integer,
    rate_period interval, waiting bigint, scheduled bigint, queued bigint, running bigint,
    retrying bigint, succeeded bigint, failed bigint, cancelled bigint, expired bigint,
    retry_policy skiplock.retry_policy, timeout interval, priority smallint, weight integer,
    max_attempts integer, estimated text[]
)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = skiplock, pg_temp
-- each queue's count is planned for that queue (a generic plan would not know it)
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_running jsonb;
    v_waiting jsonb;
    v_running_past_cap boolean;
    v_waiting_past_cap boolean;
    v_read bigint;
    v_queued text;
    q record;
BEGIN
    IF p_cap IS NULL OR p_cap < 1 THEN
        RAISE EXCEPTION 'queue_counts: p_cap must be at least 1, got %', p_cap
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(jsonb_object_agg(r.queue, r.n), '{}'), coalesce(sum(r.n), 0) > p_cap
    INTO v_running, v_running_past_cap
    FROM (SELECT s.queue, count(*) AS n
          FROM (SELECT j.queue FROM skiplock.jobs j WHERE j.state = 'running'
                LIMIT p_cap + 1) s
          GROUP BY s.queue) r;
    SELECT coalesce(jsonb_object_agg(r.queue, r.n), '{}'), coalesce(sum(r.n), 0) > p_cap
    INTO v_waiting, v_waiting_past_cap
    FROM (SELECT s.queue, count(*) AS n
          FROM (SELECT j.queue FROM skiplock.jobs j WHERE j.state = 'waiting'
                LIMIT p_cap + 1) s
          GROUP BY s.queue) r;
    FOR q IN SELECT * FROM skiplock.queues qs
             WHERE p_queues IS NULL OR qs.name = ANY (p_queues) ORDER BY qs.name LOOP
        queue := q.name;
        paused := q.paused;
        max_running := q.max_running;
        rate_limit := q.rate_limit;
        rate_period := q.rate_period;
        retry_policy := q.retry_policy;
        timeout := q.timeout;
        priority := q.priority;
        weight := q.weight;
        max_attempts := q.max_attempts;
        estimated := '{}';
        waiting := coalesce((v_waiting ->> q.name)::bigint, 0);
        IF v_waiting_past_cap THEN
            waiting := greatest(waiting, _estimated_rows(format(
                'SELECT 1 FROM skiplock.jobs WHERE state = ''waiting'' AND queue = %L', q.name)));
            estimated := estimated || 'waiting'::text;
        END IF;
        -- in the claim index's order, or a LIMIT this close to the table's size looks
        -- cheaper as a scan of the table
        SELECT count(*) FILTER (WHERE s.attempt = 0 AND s.run_at > v_now),
               count(*) FILTER (WHERE s.attempt = 0 AND s.run_at <= v_now),
               count(*) FILTER (WHERE s.attempt > 0),
               count(*)
        INTO scheduled, queued, retrying, v_read
        FROM (SELECT j.attempt, j.run_at FROM skiplock.jobs j
              WHERE j.state = 'queued' AND j.queue = q.name
              ORDER BY j.priority DESC, j.run_at LIMIT p_cap + 1) s;
        IF v_read > p_cap THEN
            v_queued := format('SELECT 1 FROM skiplock.jobs WHERE state = ''queued'' AND queue = %L',
                               q.name);
            scheduled := greatest(scheduled, _estimated_rows(format(
                '%s AND attempt = 0 AND run_at > %L', v_queued, v_now)));
            queued := greatest(queued, _estimated_rows(format(
                '%s AND attempt = 0 AND run_at <= %L', v_queued, v_now)));
            retrying := greatest(retrying, _estimated_rows(v_queued || ' AND attempt > 0'));
            estimated := estimated || ARRAY['scheduled', 'queued', 'retrying'];
        END IF;
        running := coalesce((v_running ->> q.name)::bigint, 0);
        IF v_running_past_cap THEN
            running := greatest(running, _estimated_rows(format(
                'SELECT 1 FROM skiplock.jobs WHERE state = ''running'' AND queue = %L', q.name)));
            estimated := estimated || 'running'::text;
        END IF;
        SELECT coalesce(sum(t.total) FILTER (WHERE t.status = 'succeeded'), 0)::bigint,
               coalesce(sum(t.total) FILTER (WHERE t.status = 'failed'), 0)::bigint,
               coalesce(sum(t.total) FILTER (WHERE t.status = 'cancelled'), 0)::bigint,
               coalesce(sum(t.total) FILTER (WHERE t.status = 'expired'), 0)::bigint
        INTO succeeded, failed, cancelled, expired
        FROM skiplock.queue_totals t WHERE t.queue = q.name;
        RETURN NEXT;
    END LOOP;
END
$$;

-- queue_stats: per-queue counts by status, with the queue's settings: limits,
-- defaults, and its order among queues (priority, weight). queue_counts at its default
-- cap: exact up to 10,000 jobs of a status, estimated past it (listed in `estimated`).
CREATE OR REPLACE VIEW skiplock.queue_stats AS
SELECT queue, paused, max_running, rate_limit, rate_period, waiting, scheduled, queued,
       running, retrying, succeeded, failed, cancelled, expired, retry_policy, timeout,
       priority, weight, max_attempts, estimated
FROM skiplock.queue_counts();

-- worker_stats: worker processes with how many jobs each is running and whether it is
-- healthy: no stuck handler thread, no stalled loop, and a heartbeat within the lease it
-- renews with. stalled_loops names the loops that have failed for over a lease;
-- signs_webhooks whether it can sign webhook deliveries.
CREATE OR REPLACE VIEW skiplock.worker_stats AS
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.last_heartbeat_at,
       (SELECT count(*) FROM skiplock.jobs j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running_jobs,
       w.last_heartbeat_at > now() - interval '1 minute' AS alive,
       w.stuck_jobs,
       w.stuck_jobs = 0 AND w.stalled_loops = '{}'
           AND w.last_heartbeat_at > now() - coalesce(w.lease, interval '1 minute')
           AS healthy,
       w.stalled_loops,
       w.signs_webhooks
FROM skiplock.workers w;
