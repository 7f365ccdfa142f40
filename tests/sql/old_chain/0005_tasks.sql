-- Task registry and job counters.
--
-- Workers publish the tasks they serve (name, queue, description, JSON Schema of the
-- args) when they start: the registry is the documentation of the job types and what
-- the API checks an enqueue against. Job counters by queue and task (created,
-- succeeded, failed, cancelled, expired, retried) and a duration histogram are kept by
-- triggers, so /metrics reads a few rows instead of counting the history.

CREATE TABLE skiplock.tasks (
    name          skiplock.task_name PRIMARY KEY,
    -- the task's default queue, as its latest worker declared it
    queue         skiplock.queue_name NOT NULL DEFAULT 'default',
    description   text NOT NULL DEFAULT '',
    -- JSON Schema of the job's args; NULL: the task declares none
    args_schema   jsonb,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    -- the workers that published it and were still registered at the latest publish
    worker_ids    uuid[] NOT NULL DEFAULT '{}',
    CONSTRAINT args_schema_is_schema
        CHECK (args_schema IS NULL OR jsonb_typeof(args_schema) IN ('object', 'boolean'))
);

-- publish_tasks: upsert the tasks worker p_worker_id serves. p_tasks is a JSON array of
-- {"name", "queue", "description", "args_schema"}; a task published again takes the
-- new queue, description and schema (the latest worker's code is the truth) and keeps
-- its first_seen_at. Idempotent; rows are locked in name order, so concurrent
-- publishers cannot deadlock. Returns how many tasks were published.
CREATE FUNCTION skiplock.publish_tasks(
    p_worker_id uuid, p_tasks jsonb, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql AS $$
    WITH published AS (
        INSERT INTO skiplock.tasks AS t (name, queue, description, args_schema,
                                         first_seen_at, last_seen_at, worker_ids)
        SELECT p.name, coalesce(p.queue, 'default'), coalesce(p.description, ''),
               nullif(p.args_schema, 'null'), coalesce(p_now, now()), coalesce(p_now, now()),
               array_remove(ARRAY[p_worker_id], NULL)
        FROM jsonb_to_recordset(p_tasks) AS p(name text, queue text, description text,
                                             args_schema jsonb)
        ORDER BY p.name
        ON CONFLICT (name) DO UPDATE
        SET queue = excluded.queue, description = excluded.description,
            args_schema = excluded.args_schema, last_seen_at = excluded.last_seen_at,
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
-- that serve them now (registered and heard from in the last minute). Returns no rows
-- for names never published.
CREATE FUNCTION skiplock.list_tasks(p_names text[] DEFAULT NULL)
RETURNS TABLE (name text, queue text, description text, args_schema jsonb,
               first_seen_at timestamptz, last_seen_at timestamptz, workers uuid[])
LANGUAGE sql STABLE AS $$
    SELECT t.name, t.queue, t.description, t.args_schema, t.first_seen_at, t.last_seen_at,
           ARRAY(SELECT w.id FROM skiplock.workers w
                 WHERE w.id = ANY (t.worker_ids)
                   AND w.last_heartbeat_at > now() - interval '1 minute'
                 ORDER BY w.started_at, w.id)
    FROM skiplock.tasks t
    WHERE p_names IS NULL OR t.name = ANY (p_names)
    ORDER BY t.name
$$;

-- forget_task: remove a task from the registry (a task no worker serves any more).
-- Jobs are not touched. Returns false when no task has this name.
CREATE FUNCTION skiplock.forget_task(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM skiplock.tasks WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM gone)
$$;


-- ---- counters ---------------------------------------------------------------------------
--
-- job_counts is append-only for writers: every counted statement INSERTs one row per
-- (queue, task, event), never an UPDATE of a shared total. An upsert would hold the
-- total's row lock until the writer commits, and enqueue joins the caller's
-- transaction: two requests enqueueing the same task would wait for each other.
-- compact_job_counts folds the rows into one per key; scrapes run it, so the table
-- stays as small as the keys plus what was written since the last scrape.
--   event 'created' | 'succeeded' | 'failed' | 'cancelled' | 'expired' | 'retried':
--       n jobs, le and seconds NULL;
--   event 'duration': n finished attempts of status `status` (succeeded or failed) that
--       took less than le seconds (and at least the previous bound), seconds their sum.
CREATE TABLE skiplock.job_counts (
    queue   text NOT NULL,
    task    text NOT NULL,
    event   text NOT NULL,
    status  text,
    le      float8,
    n       bigint NOT NULL,
    seconds float8
) WITH (autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000);

-- The histogram's bucket bounds in seconds (Prometheus' `le`; +Inf is implied).
CREATE FUNCTION skiplock.job_duration_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.005,0.01,0.025,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600}'::float8[]
$$;

-- compact_job_counts: fold job_counts into one row per key. Runs only where it gets the
-- advisory lock at once (else returns false): concurrent compactions never wait on each
-- other, and writers, who only INSERT, never wait on a compaction.
CREATE FUNCTION skiplock.compact_job_counts() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('skiplock.compact_job_counts')) THEN
        RETURN false;
    END IF;
    WITH gone AS (DELETE FROM skiplock.job_counts RETURNING *)
    INSERT INTO skiplock.job_counts (queue, task, event, status, le, n, seconds)
    SELECT queue, task, event, status, le, sum(n), sum(seconds)
    FROM gone GROUP BY queue, task, event, status, le;
    RETURN true;
END
$$;

-- read_job_counts: every counter, compacted first when no other compaction runs.
CREATE FUNCTION skiplock.read_job_counts()
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

-- Statement triggers with transition tables: one INSERT per statement whatever its row
-- count, so a batch of 1,000 completions costs one counter write, not 1,000.
CREATE FUNCTION skiplock.count_created_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO skiplock.job_counts (queue, task, event, n)
    SELECT r.queue, r.task, 'created', count(*) FROM new_rows r GROUP BY r.queue, r.task;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_created_counted AFTER INSERT ON skiplock.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.count_created_jobs();

-- Finished jobs by outcome, and the duration of their last attempt (started_at to the
-- end) for succeeded and failed ones, in the bucket of the first bound above it (+Inf
-- past the last). The bounds are read once per statement: a per-row function call
-- tripled the trigger's cost (3.6 ms against 0.7 ms for 500 rows). One compaction in
-- about a thousand statements keeps the table bounded even when nothing scrapes it.
CREATE FUNCTION skiplock.count_finished_jobs() RETURNS trigger
LANGUAGE plpgsql AS $$
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

CREATE TRIGGER job_history_counted AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.count_finished_jobs();
CREATE TRIGGER dead_jobs_counted AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.count_finished_jobs();

-- fail_jobs as in 0001, plus the `retried` counter (the one change: the block after
-- the outcomes are known).
-- fail_jobs: record a failed attempt for a batch of p_worker_id's jobs. p_errors[i] is
-- an object {"error": text, "traceback": text, ...}; "retry": false skips the remaining
-- attempts and "retry_in": seconds overrides the policy's delay. Per job, checked under
-- the same fencing token as complete_jobs:
--   cancel requested        → cancelled (job_history)
--   attempts left, retrying → queued again at now + retry delay (status `retrying`)
--   otherwise               → dead_jobs (status `failed`)
-- Returns (id, status) for the jobs it changed; stale tokens are ignored.
CREATE OR REPLACE FUNCTION skiplock.fail_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_errors jsonb[],
    p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_ids bigint[];
    v_outcomes text[];
BEGIN
    -- One statement: the CTEs touch disjoint rows (one outcome per job).
    WITH failed AS MATERIALIZED (
        SELECT j.id,
               CASE WHEN j.cancel_requested_at IS NOT NULL THEN 'cancelled'
                    WHEN j.attempt >= j.max_attempts OR u.error->'retry' = 'false' THEN 'failed'
                    ELSE 'retrying' END AS outcome,
               jsonb_build_array(jsonb_build_object('attempt', j.attempt, 'at', v_now,
                                                    'worker_id', p_worker_id)
                                 || (coalesce(u.error, '{}') - 'retry' - 'retry_in')) AS entry,
               v_now + CASE WHEN jsonb_typeof(u.error->'retry_in') = 'number'
                            THEN make_interval(secs => (u.error->>'retry_in')::float8)
                            ELSE skiplock.retry_delay(j.retry_policy, j.attempt) END AS retry_at
        FROM unnest(p_ids, p_attempts, p_errors) AS u(id, attempt, error)
        JOIN skiplock.jobs j ON j.id = u.id
        WHERE j.id = ANY (p_ids) AND j.attempt = u.attempt AND j.worker_id = p_worker_id
            AND j.state = 'running'
        FOR UPDATE OF j
    ), retried AS (
        UPDATE skiplock.jobs j
        SET state = 'queued', run_at = f.retry_at, worker_id = NULL, lease_expires_at = NULL,
            errors = j.errors || f.entry
        FROM failed f WHERE j.id = f.id AND f.outcome = 'retrying'
    ), noted AS (
        UPDATE skiplock.jobs j SET errors = j.errors || f.entry
        FROM failed f WHERE j.id = f.id AND f.outcome IN ('cancelled', 'failed')
    )
    SELECT array_agg(f.id ORDER BY f.id), array_agg(f.outcome ORDER BY f.id)
    INTO v_ids, v_outcomes FROM failed f;

    -- Counted here, not by a trigger: a row trigger on jobs would tax every claim, and a
    -- statement trigger cannot tell a retry from the other updates of the statement.
    IF 'retrying' = ANY (v_outcomes) THEN
        INSERT INTO skiplock.job_counts (queue, task, event, n)
        SELECT j.queue, j.task, 'retried', count(*)
        FROM skiplock.jobs j
        WHERE j.id = ANY (ARRAY(SELECT c.id FROM unnest(v_ids, v_outcomes) AS c(id, outcome)
                                WHERE c.outcome = 'retrying'))
        GROUP BY j.queue, j.task;
    END IF;

    IF 'failed' = ANY (v_outcomes) THEN
        PERFORM skiplock.bury_jobs(
            ARRAY(SELECT c.id FROM unnest(v_ids, v_outcomes) AS c(id, outcome)
                  WHERE c.outcome = 'failed'),
            v_now);
    END IF;

    IF 'cancelled' = ANY (v_outcomes) THEN
        PERFORM skiplock.archive_jobs(
            ARRAY(SELECT c.id FROM unnest(v_ids, v_outcomes) AS c(id, outcome)
                  WHERE c.outcome = 'cancelled'),
            'cancelled', NULL, v_now);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_ids, v_outcomes);
END
$$;

-- CREATE OR REPLACE drops the function's settings: keep the per-call plans of 0001.
ALTER FUNCTION skiplock.fail_jobs(uuid, bigint[], integer[], jsonb[], timestamptz)
    SET plan_cache_mode = force_custom_plan;
