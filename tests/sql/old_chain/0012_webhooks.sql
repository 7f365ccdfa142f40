-- skiplock 0012: result webhooks. A job may carry a callback URL; when it reaches a
-- final state (succeeded, failed into the dead letters, cancelled, expired) a delivery
-- job of the built-in task `skiplock.webhook` is enqueued in the same transaction, in
-- the finished job's queue. The worker serving that queue POSTs the outcome, signed,
-- and retries with backoff like any job.
--
-- Where: statement triggers on the two tables finished jobs land in (job_history,
-- dead_jobs), so every way a job can finish is covered once, whatever function moved
-- it. A finish without callback URLs pays one probe of the statement's transition
-- table (already captured for the counting triggers); nothing is inserted then, so the
-- jobs' own insert triggers do not fire.

CREATE DOMAIN skiplock.callback_url AS text
    CONSTRAINT callback_url_http CHECK (
        VALUE ~* '^https?://[^/?#[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$')
    CONSTRAINT callback_url_length CHECK (octet_length(VALUE) <= 2048);

ALTER TABLE skiplock.jobs ADD COLUMN callback_url skiplock.callback_url;
ALTER TABLE skiplock.job_history ADD COLUMN callback_url text;
ALTER TABLE skiplock.dead_jobs ADD COLUMN callback_url text;

-- The view keeps its columns and gains the callback URL at the end.
CREATE OR REPLACE VIEW skiplock.all_jobs AS
SELECT id, task, args, queue, priority,
       CASE WHEN state = 'running' THEN 'running'
            WHEN state = 'waiting' THEN 'waiting'
            WHEN attempt > 0 THEN 'retrying'
            WHEN run_at > now() THEN 'scheduled'
            ELSE 'queued' END AS status,
       attempt, max_attempts, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, progress, NULL::jsonb AS result,
       errors -> -1 AS last_error, errors, tags, meta, retry_policy, timeout, worker_id,
       lease_expires_at, cancel_requested_at, unique_key, expires_at, depends_on,
       callback_url::text AS callback_url
FROM skiplock.jobs
UNION ALL
SELECT id, task, args, queue, priority, status::text, attempt, max_attempts, NULL,
       created_at, started_at, finished_at, progress, result, errors -> -1, errors, tags,
       meta, retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on,
       callback_url
FROM skiplock.job_history
UNION ALL
SELECT id, task, args, queue, priority, 'failed', attempt, max_attempts, NULL, created_at,
       started_at, failed_at, progress, NULL, errors -> -1, errors, tags, meta,
       retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on,
       callback_url
FROM skiplock.dead_jobs;

-- enqueue as in 0001, plus callback_url: POST the outcome there when the job finishes
-- (see docs/webhooks.md). A new parameter changes the signature, so the old one goes.
DROP FUNCTION skiplock.enqueue(text, jsonb, text, integer, timestamptz, interval, integer,
                               jsonb, interval, text[], jsonb, text, text, interval,
                               timestamptz, interval, bigint[], text);

-- enqueue: add one job; returns its id. Joins the caller's transaction: rolled back, no
-- job. Parameters are named for use as `queue => 'emails'`. run_at and delay add up
-- (run_at defaults to now()). Bad input raises (check constraints name the rule).
-- With unique_key, the job is created only if no other job holds the key; otherwise
-- the holder's id is returned and nothing is written. unique_scope says how long the key
-- is held: 'queued' (until the job starts), 'active' (until it finishes; the default),
-- or unique_for => interval (until that long after it finishes).
-- expires_at (or expires_in, from now) is a deadline: a job not started by then is not
-- started at all and ends `expired`.
-- depends_on lists jobs that must succeed first: the job is `waiting` until they all
-- have; if one fails, is cancelled or expires, on_dependency_failure decides: 'fail'
-- (the job goes to the dead letters), 'cancel', or 'run' (it runs anyway).
-- callback_url (http or https, at most 2048 bytes) receives the outcome when the job
-- reaches a final state, through a `skiplock.webhook` delivery job.
CREATE FUNCTION skiplock.enqueue(
    task         text,
    args         jsonb DEFAULT '{}',
    queue        text DEFAULT 'default',
    priority     integer DEFAULT 0,
    run_at       timestamptz DEFAULT NULL,
    delay        interval DEFAULT NULL,
    max_attempts integer DEFAULT 20,
    retry_policy jsonb DEFAULT NULL,
    timeout      interval DEFAULT NULL,
    tags         text[] DEFAULT '{}',
    meta         jsonb DEFAULT '{}',
    unique_key   text DEFAULT NULL,
    unique_scope text DEFAULT NULL,
    unique_for   interval DEFAULT NULL,
    expires_at   timestamptz DEFAULT NULL,
    expires_in   interval DEFAULT NULL,
    depends_on   bigint[] DEFAULT NULL,
    on_dependency_failure text DEFAULT 'fail',
    callback_url text DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_scope skiplock.unique_scope;
    v_missing bigint[];
    -- checked before anything is written (a unique key, for one)
    v_callback_url skiplock.callback_url := callback_url;
BEGIN
    IF unique_key IS NOT NULL THEN
        v_scope := CASE WHEN unique_for IS NOT NULL THEN 'period'
                        ELSE coalesce(unique_scope, 'active') END;
        IF unique_scope IS NOT NULL AND unique_for IS NOT NULL AND unique_scope <> 'period' THEN
            RAISE EXCEPTION 'unique_for goes with unique_scope ''period'', got %', unique_scope
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_id := nextval(pg_get_serial_sequence('skiplock.jobs', 'id'));
        INSERT INTO skiplock.unique_keys AS k (key, job_id, scope, period)
        VALUES (unique_key, v_id, v_scope, unique_for)
        ON CONFLICT (key) DO UPDATE
            SET job_id = excluded.job_id, scope = excluded.scope, period = excluded.period,
                holds_until = NULL
            WHERE k.holds_until IS NOT NULL AND k.holds_until <= now()
        RETURNING k.job_id INTO v_id;
        IF v_id IS NULL THEN
            RETURN (SELECT k.job_id FROM skiplock.unique_keys k WHERE k.key = enqueue.unique_key);
        END IF;
    END IF;

    IF cardinality(depends_on) > 0 THEN
        v_missing := ARRAY(SELECT d FROM unnest(depends_on) AS d
                           WHERE NOT EXISTS (SELECT 1 FROM skiplock.all_jobs a WHERE a.id = d));
        IF cardinality(v_missing) > 0 THEN
            RAISE EXCEPTION 'depends_on names jobs that do not exist: %', v_missing
                USING ERRCODE = 'foreign_key_violation';
        END IF;
    END IF;

    INSERT INTO skiplock.jobs (id, task, args, queue, priority, run_at, max_attempts,
                               retry_policy, timeout, tags, meta, unique_key, expires_at,
                               depends_on, on_dependency_failure, state, callback_url)
    VALUES (coalesce(v_id, nextval(pg_get_serial_sequence('skiplock.jobs', 'id'))),
            enqueue.task, coalesce(enqueue.args, '{}'), coalesce(enqueue.queue, 'default'),
            coalesce(enqueue.priority, 0),
            coalesce(enqueue.run_at, now()) + coalesce(enqueue.delay, interval '0'),
            coalesce(enqueue.max_attempts, 20), enqueue.retry_policy, enqueue.timeout,
            coalesce(enqueue.tags, '{}'), coalesce(enqueue.meta, '{}'), enqueue.unique_key,
            coalesce(enqueue.expires_at, now() + enqueue.expires_in),
            nullif(enqueue.depends_on, '{}'),
            coalesce(enqueue.on_dependency_failure, 'fail')::skiplock.dependency_policy,
            CASE WHEN cardinality(enqueue.depends_on) > 0 THEN 'waiting' ELSE 'queued' END
            ::skiplock.job_state,
            v_callback_url)
    RETURNING id INTO v_id;

    IF cardinality(depends_on) > 0 THEN
        INSERT INTO skiplock.job_dependencies (depends_on, job_id)
        SELECT DISTINCT d, v_id FROM unnest(depends_on) AS d;
        -- Dependencies that already finished settle it now (maybe to queued at once).
        PERFORM skiplock.settle_waiting_jobs(ARRAY[v_id], now());
    END IF;
    RETURN v_id;
END
$$;

-- enqueue_many as in 0001, plus the "callback_url" key.
-- enqueue_many: add many jobs in one statement; returns their ids in input order.
-- p_jobs is a JSON array of objects with enqueue's parameter names as keys
-- ({"task": "a", "args": {…}, "queue": …, "priority": …, "run_at": …, "delay": seconds,
-- "max_attempts": …, "retry_policy": {…}, "timeout": seconds, "tags": […], "meta": {…},
-- "expires_at": …, "expires_in": seconds, "callback_url": …}).
-- One bad job rejects the whole call.
CREATE OR REPLACE FUNCTION skiplock.enqueue_many(p_jobs jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_path_exists(p_jobs, '$[*] ? (exists(@.unique_key) || exists(@.depends_on))') THEN
        RAISE EXCEPTION 'enqueue_many does not take unique_key or depends_on; enqueue those jobs one by one'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO skiplock.jobs (task, args, queue, priority, run_at, max_attempts,
                                   retry_policy, timeout, tags, meta, expires_at, callback_url)
        SELECT j.task, coalesce(j.args, '{}'), coalesce(j.queue, 'default'),
               coalesce(j.priority, 0),
               coalesce(j.run_at, now()) + make_interval(secs => coalesce(j.delay, 0)),
               coalesce(j.max_attempts, 20), j.retry_policy,
               make_interval(secs => j.timeout), coalesce(j.tags, '{}'),
               coalesce(j.meta, '{}'),
               coalesce(j.expires_at, now() + make_interval(secs => j.expires_in)),
               j.callback_url
        FROM jsonb_to_recordset(p_jobs) AS j(
                 task text, args jsonb, queue text, priority integer, run_at timestamptz,
                 delay float8, max_attempts integer, retry_policy jsonb, timeout float8,
                 tags text[], meta jsonb, expires_at timestamptz, expires_in float8,
                 callback_url text)
        RETURNING id
    )
    -- ids come from one sequence in row order, so sorting them gives input order
    SELECT i.id FROM inserted i ORDER BY i.id;
END
$$;

-- finish_jobs as in 0008, carrying callback_url into job_history.
-- finish_jobs (internal): the one move of jobs out of the hot table into job_history
-- with p_status. With p_worker_id, only the jobs still running under their token
-- (p_worker_id, p_attempts[i]) move: the DELETE's WHERE is the fencing check and takes
-- the row locks itself. Without it (NULL), the caller has locked and checked the rows.
-- p_results lines up with p_ids (NULL: no results). Frees unique keys and settles
-- dependents (jobs_left). Returns the moved ids.
CREATE OR REPLACE FUNCTION skiplock.finish_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[],
    p_status skiplock.finished_status, p_results jsonb[], p_now timestamptz
) RETURNS bigint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_ids bigint[];
    v_keyed bigint[];
BEGIN
    WITH moved AS (
        DELETE FROM skiplock.jobs j
        USING unnest(p_ids, p_attempts, p_results) AS u(id, attempt, result)
        WHERE j.id = ANY (p_ids) AND j.id = u.id
          AND (p_worker_id IS NULL
               OR (j.attempt = u.attempt AND j.worker_id = p_worker_id AND j.state = 'running'))
        RETURNING j.*, u.result
    ), archived AS (
        INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,
            max_attempts, retry_policy, timeout, tags, meta, unique_key, expires_at,
            depends_on, errors, progress, result, created_at, started_at, finished_at,
            worker_id, callback_url)
        SELECT m.id, m.task, m.args, m.queue, m.priority, p_status, m.attempt,
               m.max_attempts, m.retry_policy, m.timeout, m.tags, m.meta, m.unique_key,
               m.expires_at, m.depends_on, m.errors, m.progress, m.result, m.created_at,
               m.started_at, p_now, m.worker_id, m.callback_url
        FROM moved m
        RETURNING job_history.id, job_history.unique_key
    )
    SELECT array_agg(a.id), array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO v_ids, v_keyed FROM archived a;
    IF v_ids IS NOT NULL THEN
        PERFORM skiplock.jobs_left(v_ids, v_keyed, p_now);
    END IF;
    RETURN v_ids;
END
$$;

-- bury_jobs as in 0001, carrying callback_url into dead_jobs.
-- bury_jobs (internal): move rows out of the hot table into dead_jobs (status `failed`);
-- the caller has locked them, checked their token and appended the error entry. Frees
-- their unique keys and settles the jobs waiting on them. Returns the buried ids.
CREATE OR REPLACE FUNCTION skiplock.bury_jobs(p_ids bigint[], p_now timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_keyed bigint[];
BEGIN
    WITH buried AS (
        DELETE FROM skiplock.jobs j WHERE j.id = ANY (p_ids)
        RETURNING j.*
    ), dead AS (
        INSERT INTO skiplock.dead_jobs (id, task, args, queue, priority, attempt,
            max_attempts, retry_policy, timeout, tags, meta, unique_key, expires_at,
            depends_on, errors, progress, created_at, started_at, failed_at, worker_id,
            callback_url)
        SELECT b.id, b.task, b.args, b.queue, b.priority, b.attempt, b.max_attempts,
               b.retry_policy, b.timeout, b.tags, b.meta, b.unique_key, b.expires_at,
               b.depends_on, b.errors, b.progress, b.created_at, b.started_at, p_now,
               b.worker_id, b.callback_url
        FROM buried b
        RETURNING dead_jobs.id, dead_jobs.unique_key
    )
    SELECT array_agg(d.id), array_agg(d.id) FILTER (WHERE d.unique_key IS NOT NULL)
    INTO v_ids, v_keyed FROM dead d;
    PERFORM skiplock.jobs_left(v_ids, v_keyed, p_now);
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- retry_job as in 0001; the revived job keeps its callback URL.
-- retry_job: run a job again. A failed (dead) or finished job goes back to the hot table
-- (without its unique key: a retry is an explicit request to run it again)
-- with the same id, attempts reset and its error history kept; a job that is waiting to
-- run (scheduled, retrying, queued) is made ready now. Raises for a running job.
-- Returns the job's status after the call, or NULL when no job has this id.
CREATE OR REPLACE FUNCTION skiplock.retry_job(p_id bigint, p_now timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_state skiplock.job_state;
BEGIN
    SELECT j.state INTO v_state FROM skiplock.jobs j WHERE j.id = p_id FOR UPDATE;
    IF v_state = 'running' THEN
        RAISE EXCEPTION 'job % is running; cancel it first or wait for it to finish', p_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF v_state IS NOT NULL THEN
        UPDATE skiplock.jobs j SET run_at = v_now WHERE j.id = p_id;
        PERFORM pg_notify('skiplock_jobs', (SELECT j.queue FROM skiplock.jobs j WHERE j.id = p_id));
        -- 'queued', or 'retrying' for a job with attempts behind it (as all_jobs says)
        RETURN (SELECT a.status FROM skiplock.all_jobs a WHERE a.id = p_id);
    END IF;

    WITH revived AS (
        DELETE FROM skiplock.dead_jobs d WHERE d.id = p_id
        RETURNING d.id, d.task, d.args, d.queue, d.priority, d.max_attempts, d.retry_policy,
                  d.timeout, d.tags, d.meta, d.errors, d.created_at, d.callback_url
    ), revived_history AS (
        DELETE FROM skiplock.job_history h WHERE h.id = p_id
        RETURNING h.id, h.task, h.args, h.queue, h.priority, h.max_attempts, h.retry_policy,
                  h.timeout, h.tags, h.meta, h.errors, h.created_at, h.callback_url
    )
    INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts, retry_policy,
                               timeout, tags, meta, errors, created_at, callback_url, run_at)
    SELECT r.*, v_now FROM (SELECT * FROM revived UNION ALL SELECT * FROM revived_history) r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN 'queued';
END
$$;

-- redrive_dead_jobs as in 0002; redriven jobs keep their callback URL.
-- redrive_dead_jobs: move dead letters back to the queue (same ids, attempts reset,
-- error history kept). p_queue / p_task filter (NULL: any). Rows are taken with SKIP
-- LOCKED, so redrives at once never move the same job and never wait on each other;
-- call it again until it returns fewer than p_limit ids to redrive everything in bounded
-- batches. The insert wakes workers through the jobs_inserted trigger. Returns the ids
-- moved; none when nothing matches.
CREATE OR REPLACE FUNCTION skiplock.redrive_dead_jobs(
    p_queue text DEFAULT NULL, p_task text DEFAULT NULL, p_limit integer DEFAULT 1000,
    p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE sql AS $$
    WITH picked AS MATERIALIZED (
        SELECT d.id FROM skiplock.dead_jobs d
        WHERE (p_queue IS NULL OR d.queue = p_queue) AND (p_task IS NULL OR d.task = p_task)
        ORDER BY d.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), revived AS (
        DELETE FROM skiplock.dead_jobs d USING picked p WHERE d.id = p.id
        RETURNING d.id, d.task, d.args, d.queue, d.priority, d.max_attempts, d.retry_policy,
                  d.timeout, d.tags, d.meta, d.errors, d.created_at, d.callback_url
    ), inserted AS (
        INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts,
                                   retry_policy, timeout, tags, meta, errors, created_at,
                                   callback_url, run_at)
        SELECT r.*, coalesce(p_now, now()) FROM revived r
        RETURNING id
    )
    SELECT id FROM inserted ORDER BY id
$$;

-- enqueue_webhooks (trigger): for the finished jobs of one statement that carry a
-- callback URL, enqueue one `skiplock.webhook` delivery job each, in the job's own
-- queue, with args {"url", "outcome"}. The outcome is what the receiver gets:
-- {"job_id", "task", "queue", "status", "attempts", "result", "error", "finished_at"}
-- (error: the last error entry, or null). Deliveries retry up to 10 times with
-- exponential backoff from 5 s (about 40 minutes in all), then rest in the dead
-- letters. A delivery job never gets a webhook of its own.
CREATE FUNCTION skiplock.enqueue_webhooks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The common case: no callback here, and no INSERT (whose own triggers would fire).
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.callback_url IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO skiplock.jobs (task, args, queue, max_attempts, retry_policy)
    SELECT 'skiplock.webhook',
           jsonb_build_object('url', o.callback_url, 'outcome', jsonb_build_object(
               'job_id', o.id, 'task', o.task, 'queue', o.queue, 'status', o.status,
               'attempts', o.attempt, 'result', o.result, 'error', o.error,
               'finished_at', o.finished_at)),
           o.queue, 10, '{"kind": "exponential", "base": 5, "max_delay": 3600}'
    FROM (SELECT n.id, n.task, n.queue, n.attempt, n.callback_url, n.errors -> -1 AS error,
                 CASE WHEN TG_TABLE_NAME = 'dead_jobs' THEN 'failed'
                      ELSE to_jsonb(n) ->> 'status' END AS status,
                 to_jsonb(n) -> 'result' AS result,
                 coalesce(to_jsonb(n) -> 'finished_at', to_jsonb(n) -> 'failed_at')
                     AS finished_at
          FROM new_rows n
          WHERE n.callback_url IS NOT NULL AND n.task <> 'skiplock.webhook'
          ORDER BY n.id) o;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_history_webhooks AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.enqueue_webhooks();
CREATE TRIGGER dead_jobs_webhooks AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.enqueue_webhooks();
