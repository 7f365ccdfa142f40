-- Task registry and counters: the tasks workers serve, the job counters by queue and
-- task (kept by statement triggers with transition tables: one INSERT per statement
-- whatever its row count, so a batch of 1,000 completions costs one counter write, not
-- 1,000), the duration histogram, and a queue's recent throughput.

-- publish_tasks: upsert the tasks worker p_worker_id serves. p_tasks is a JSON array of
-- {"name", "queue", "description", "args_schema", "defaults"}; defaults are the task's
-- default job options by name (priority, max_attempts, retry_policy, timeout, tags, meta,
-- on_dependency_failure, callback_url, delay, expires_in; durations in seconds), which
-- enqueue, enqueue_many, insert_jobs and plain INSERTs apply to what a job leaves out. A
-- task published again takes the new queue, description, schema and defaults (the
-- latest worker's code is the truth) and keeps its first_seen_at. Idempotent; rows are locked in name order, so concurrent
-- publishers cannot deadlock. Returns how many tasks were published.
CREATE OR REPLACE FUNCTION skiplock.publish_tasks(
    p_worker_id uuid, p_tasks jsonb, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH published AS (
        INSERT INTO skiplock.tasks AS t (name, queue, description, args_schema, defaults,
                                         first_seen_at, last_seen_at, worker_ids)
        SELECT p.name, coalesce(p.queue, 'default'), coalesce(p.description, ''),
               nullif(p.args_schema, 'null'), coalesce(p.defaults, '{}') - 'queue',
               coalesce(p_now, now()), coalesce(p_now, now()),
               array_remove(ARRAY[p_worker_id], NULL)
        FROM jsonb_to_recordset(p_tasks) AS p(name text, queue text, description text,
                                             args_schema jsonb, defaults jsonb)
        ORDER BY p.name
        ON CONFLICT (name) DO UPDATE
        SET queue = excluded.queue, description = excluded.description,
            args_schema = excluded.args_schema, defaults = excluded.defaults,
            last_seen_at = excluded.last_seen_at,
            -- drop workers that have since been unregistered or pruned: the list stays
            -- as short as the live fleet
            worker_ids = ARRAY(
                SELECT DISTINCT w FROM unnest(t.worker_ids || excluded.worker_ids) AS w
                WHERE w = ANY (excluded.worker_ids)
                   OR EXISTS (SELECT 1 FROM skiplock.workers k WHERE k.id = w))
        RETURNING 1
    )
    SELECT count(*)::integer FROM published
$$;

-- list_tasks: the registered tasks (all, or those named in p_names), with the workers
-- that serve them now (registered, heartbeat within the minute before p_now, default
-- now()) and last_seen_at = the later of the published time and those workers' last
-- heartbeat. Returns no rows for names never published. Reads only; locks nothing.
-- Not planned per call: p_names is a handful of task names.
CREATE OR REPLACE FUNCTION skiplock.list_tasks(p_names text[] DEFAULT NULL, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (name text, queue text, description text, args_schema jsonb,
               first_seen_at timestamptz, last_seen_at timestamptz, workers uuid[],
               defaults jsonb)
LANGUAGE sql STABLE AS $$
    SELECT t.name, t.queue, t.description, t.args_schema, t.first_seen_at,
           greatest(t.last_seen_at, live.last_heartbeat_at),  -- greatest skips NULL
           coalesce(live.ids, '{}'), t.defaults
    FROM skiplock.tasks t
    CROSS JOIN LATERAL (
        SELECT array_agg(w.id ORDER BY w.started_at, w.id) AS ids,
               max(w.last_heartbeat_at) AS last_heartbeat_at
        FROM skiplock.workers w
        WHERE w.id = ANY (t.worker_ids)
          AND w.last_heartbeat_at > coalesce(p_now, now()) - interval '1 minute'
    ) live
    WHERE p_names IS NULL OR t.name = ANY (p_names)
    ORDER BY t.name
$$;

-- forget_task: remove a task from the registry (a task no worker serves any more).
-- Jobs are not touched. Returns false when no task has this name.
CREATE OR REPLACE FUNCTION skiplock.forget_task(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM skiplock.tasks WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$$;

-- _count_finished_jobs (trigger): finished jobs by outcome, and the duration of their
-- last attempt (started_at to the end) for succeeded and failed ones, in the bucket of
-- the first bound above it (+Inf past the last). The bounds are read once per
-- statement: a function call per row would cost several times the rest of the trigger.
-- One compaction in about a thousand statements keeps the table bounded even when
-- nothing scrapes it.
CREATE OR REPLACE FUNCTION skiplock._count_finished_jobs() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = auto  -- see _jobs_finished
AS $$
DECLARE
    v_bounds float8[] := skiplock.job_duration_bounds();
BEGIN
    IF TG_TABLE_NAME = 'dead_jobs' THEN
        INSERT INTO skiplock.job_counts (queue, task, event, status, le, n, seconds)
        SELECT r.queue, r.task, 'failed', NULL, NULL, count(*), NULL
        FROM new_rows r GROUP BY r.queue, r.task
        UNION ALL
        SELECT d.queue, d.task, 'duration', 'failed',
               coalesce(v_bounds[width_bucket(d.seconds, v_bounds) + 1], 'Infinity'),
               count(*), sum(d.seconds)
        FROM (SELECT r.queue, r.task, extract(epoch FROM r.failed_at - r.started_at)::float8
                     AS seconds
              FROM new_rows r WHERE r.started_at IS NOT NULL) d
        GROUP BY 1, 2, 5;
    ELSE
        INSERT INTO skiplock.job_counts (queue, task, event, status, le, n, seconds)
        SELECT r.queue, r.task, r.status::text, NULL, NULL, count(*), NULL
        FROM new_rows r GROUP BY r.queue, r.task, r.status
        UNION ALL
        SELECT d.queue, d.task, 'duration', 'succeeded',
               coalesce(v_bounds[width_bucket(d.seconds, v_bounds) + 1], 'Infinity'),
               count(*), sum(d.seconds)
        FROM (SELECT r.queue, r.task, extract(epoch FROM r.finished_at - r.started_at)::float8
                     AS seconds
              FROM new_rows r WHERE r.status = 'succeeded' AND r.started_at IS NOT NULL) d
        GROUP BY 1, 2, 5;
    END IF;
    IF random() < 0.001 THEN
        PERFORM skiplock.compact_job_counts();
    END IF;
    RETURN NULL;
END
$$;

-- the job counters, once per statement
CREATE OR REPLACE TRIGGER job_history_counted AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._count_finished_jobs();
CREATE OR REPLACE TRIGGER dead_jobs_counted AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._count_finished_jobs();

-- job_duration_bounds: the duration histogram's bucket bounds in seconds (Prometheus'
-- `le`; +Inf is implied).
CREATE OR REPLACE FUNCTION skiplock.job_duration_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[]
$$;

-- read_job_counts: every counter, compacted first when no other compaction runs.
CREATE OR REPLACE FUNCTION skiplock.read_job_counts()
RETURNS TABLE (queue text, task text, event text, status text, le float8, n bigint,
               seconds float8)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM skiplock.compact_job_counts();
    RETURN QUERY
    SELECT c.queue, c.task, c.event, c.status, c.le, sum(c.n)::bigint, sum(c.seconds)
    FROM skiplock.job_counts c
    GROUP BY c.queue, c.task, c.event, c.status, c.le
    ORDER BY c.queue, c.task, c.event, c.status, c.le;
END
$$;

-- compact_job_counts: fold job_counts into one row per key, its totals (minute NULL);
-- the rows counted since the last compaction (stamped with their minute) are added to
-- the metrics history's minute rows on the way (job_metrics_minutes, folded by
-- fold_metrics in 115_metrics_history.sql): outcomes, retries and the run-time
-- histogram, by minute, queue and task. Runs only where it gets the advisory lock at
-- once (else returns false): concurrent compactions never wait on each other, and
-- writers, who only INSERT, never wait on a compaction.
CREATE OR REPLACE FUNCTION skiplock.compact_job_counts() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_bounds float8[] := skiplock.job_duration_bounds();
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('skiplock.compact_job_counts')) THEN
        RETURN false;
    END IF;
    WITH gone AS (
        DELETE FROM skiplock.job_counts RETURNING *
    ), history AS (
        INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, succeeded, failed,
            retried, cancelled, expired, run_buckets, run_seconds)
        SELECT g.minute, g.queue, g.task,
               coalesce(sum(g.n) FILTER (WHERE g.event = 'succeeded'), 0),
               coalesce(sum(g.n) FILTER (WHERE g.event = 'failed'), 0),
               coalesce(sum(g.n) FILTER (WHERE g.event = 'retried'), 0),
               coalesce(sum(g.n) FILTER (WHERE g.event = 'cancelled'), 0),
               coalesce(sum(g.n) FILTER (WHERE g.event = 'expired'), 0),
               -- a duration row's le is one of the bounds, or +Inf past the last
               skiplock._bucket_counts(
                   array_agg(coalesce(array_position(v_bounds, g.le), cardinality(v_bounds) + 1))
                       FILTER (WHERE g.event = 'duration'),
                   array_agg(g.n) FILTER (WHERE g.event = 'duration'),
                   cardinality(v_bounds) + 1),
               coalesce(sum(g.seconds) FILTER (WHERE g.event = 'duration'), 0)
        FROM gone g
        WHERE g.minute IS NOT NULL AND g.event <> 'created'
        GROUP BY g.minute, g.queue, g.task
    )
    INSERT INTO skiplock.job_counts (queue, task, event, status, le, n, seconds, minute)
    SELECT queue, task, event, status, le, sum(n), sum(seconds), NULL
    FROM gone GROUP BY queue, task, event, status, le;
    RETURN true;
END
$$;

-- queue_throughput: jobs of p_queue that finished in each of the last p_minutes whole
-- minutes (the current, partial minute included), by outcome. Reads job_history through
-- job_history_finished_at_idx and dead_jobs through dead_jobs_failed_at_idx: a range
-- scan over the window, never the whole history. Takes no locks. Returns one row per
-- minute, oldest first, zeros when nothing finished.
CREATE OR REPLACE FUNCTION skiplock.queue_throughput(
    p_queue text, p_minutes integer DEFAULT 60, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (minute timestamptz, succeeded bigint, failed bigint, cancelled bigint,
                 expired bigint)
LANGUAGE sql STABLE AS $$
    WITH finished AS (
        -- The window's start as a plain expression (not a joined row), so both scans
        -- are index range scans on the *_at index.
        SELECT date_trunc('minute', h.finished_at) AS minute, h.status::text AS status
        FROM skiplock.job_history h
        WHERE h.finished_at >= date_trunc('minute', coalesce(p_now, now()))
                               - make_interval(mins => greatest(p_minutes, 1) - 1)
          AND h.queue = p_queue
        UNION ALL
        SELECT date_trunc('minute', d.failed_at), 'failed'
        FROM skiplock.dead_jobs d
        WHERE d.failed_at >= date_trunc('minute', coalesce(p_now, now()))
                             - make_interval(mins => greatest(p_minutes, 1) - 1)
          AND d.queue = p_queue
    )
    SELECT m.minute,
           count(f.status) FILTER (WHERE f.status = 'succeeded'),
           count(f.status) FILTER (WHERE f.status = 'failed'),
           count(f.status) FILTER (WHERE f.status = 'cancelled'),
           count(f.status) FILTER (WHERE f.status = 'expired')
    FROM generate_series(
             date_trunc('minute', coalesce(p_now, now()))
                 - make_interval(mins => greatest(p_minutes, 1) - 1),
             date_trunc('minute', coalesce(p_now, now())),
             interval '1 minute') AS m(minute)
    LEFT JOIN finished f ON f.minute = m.minute
    GROUP BY m.minute
    ORDER BY m.minute
$$;
