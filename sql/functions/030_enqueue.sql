-- Enqueue: how a job gets into the hot table. enqueue and enqueue_many for SQL callers,
-- reserve_job_ids for producers that COPY, and the statement trigger that registers new
-- queues, counts created jobs and wakes the workers for every way of inserting (plain
-- INSERT and COPY included).

-- _wake_workers (internal): one NOTIFY on skiplock_jobs naming the queues that got ready
-- jobs (comma-separated), or '*' (every worker looks) when the names would come near the
-- 8,000-byte payload limit, where pg_notify raises. Every move that readies jobs wakes the
-- workers through it; nothing is sent for NULL.
CREATE OR REPLACE FUNCTION skiplock._wake_workers(p_queues text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_notify('skiplock_jobs',
                     CASE WHEN octet_length(p_queues) > 4000 THEN '*' ELSE p_queues END)
    WHERE p_queues IS NOT NULL
$$;

-- _jobs_inserted (trigger): after every statement that inserts jobs, whatever its row
-- count: count them (`created`, by queue and task), register the queues not seen
-- before, and wake the workers with one NOTIFY on skiplock_jobs whose payload is the
-- comma-separated queues that got ready jobs, or '*' when that would not fit in a
-- NOTIFY payload (_wake_workers). Plain INSERTs and COPY from any language wake workers
-- through it.
--
-- The inserted rows are grouped once by (queue, task) and everything is done from the
-- groups, so the trigger's work follows the number of groups, not of rows. The queues
-- INSERT runs only for queues with no row yet: even when it inserts nothing it is a
-- noticeable share of a single-job insert. A queue another transaction is registering
-- (its row not committed yet) counts as new, and the INSERT waits for that transaction.
CREATE OR REPLACE FUNCTION skiplock._jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_new text[];
    v_queues text;
BEGIN
    WITH inserted AS (
        SELECT r.queue, r.task, count(*) AS n,
               bool_or(r.state = 'queued' AND r.run_at <= now()) AS ready
        FROM new_rows r
        GROUP BY r.queue, r.task
    ), counted AS (
        INSERT INTO skiplock.job_counts (queue, task, event, n)
        SELECT i.queue, i.task, 'created', i.n FROM inserted i
    )
    SELECT array_agg(DISTINCT i.queue) FILTER (WHERE q.name IS NULL),
           string_agg(DISTINCT i.queue, ',') FILTER (WHERE i.ready)
    INTO v_new, v_queues
    FROM inserted i LEFT JOIN skiplock.queues q ON q.name = i.queue;
    IF v_new IS NOT NULL THEN
        INSERT INTO skiplock.queues (name) SELECT unnest(v_new) ON CONFLICT DO NOTHING;
    END IF;
    PERFORM skiplock._wake_workers(v_queues);
    RETURN NULL;
END
$$;

-- _jobs_inserted: once per statement (see the function above).
CREATE OR REPLACE TRIGGER jobs_inserted AFTER INSERT ON skiplock.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._jobs_inserted();

-- reserve_job_ids: p_count fresh job ids, in order, for a producer that inserts jobs
-- with COPY (which returns no ids): the Python producer sends plain jobs as
-- `COPY skiplock.jobs (id, task, args, ...)`, the fastest way into the table; the
-- statement trigger still wakes workers once per COPY. Ids never used are simply skipped.
CREATE OR REPLACE FUNCTION skiplock.reserve_job_ids(p_count integer) RETURNS bigint[]
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    -- the identity sequence by name: pg_get_serial_sequence() per row costs more than the
    -- nextval itself
    SELECT ARRAY(SELECT nextval('skiplock.jobs_id_seq'::regclass) FROM generate_series(1, p_count))
$$;

-- insert_jobs: the bulk producer's one INSERT, for jobs that share every option but
-- their args (and maybe their task); returns their ids in input order. p_shared holds
-- the shared options as JSON, the unset ones left out for the table's defaults: task,
-- queue, priority, run_at, max_attempts, retry_policy, timeout ("30 seconds"), tags,
-- meta, expires_at, callback_url. p_jobs is an array of args objects when p_shared has
-- a task, else of [task, args] pairs. Options the table checks (names, ranges, domains)
-- raise as for a plain INSERT; an unknown option raises invalid_parameter_value.
-- The shared values are cast once, in a MATERIALIZED CTE: their domain checks run once
-- per statement, not once per job. The statement names only the columns given, so the
-- others keep their defaults; it is built from the fixed list below and planned per call
-- (one plan per batch). Ids come back in input order: rows are inserted in array order
-- and a session's nextval only grows. Wakes workers like any insert (one NOTIFY per
-- statement).
CREATE OR REPLACE FUNCTION skiplock.insert_jobs(p_jobs jsonb, p_shared jsonb DEFAULT '{}')
RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_types CONSTANT jsonb := '{"task": "skiplock.task_name", "queue": "skiplock.queue_name",
        "priority": "smallint", "run_at": "timestamptz", "max_attempts": "integer",
        "retry_policy": "skiplock.retry_policy", "timeout": "interval", "tags": "text[]",
        "meta": "skiplock.job_meta", "expires_at": "timestamptz",
        "callback_url": "skiplock.callback_url"}';
    v_names text[];
    v_once text;
    v_ids bigint[];
BEGIN
    v_names := ARRAY(SELECT k FROM jsonb_object_keys(coalesce(p_shared, '{}')) AS k ORDER BY k);
    IF EXISTS (SELECT 1 FROM unnest(v_names) AS k WHERE NOT v_types ? k) THEN
        RAISE EXCEPTION 'insert_jobs: unknown option(s) %',
            (SELECT string_agg(k, ', ') FROM unnest(v_names) AS k WHERE NOT v_types ? k)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(CASE
               WHEN k = 'tags' THEN format('ARRAY(SELECT jsonb_array_elements_text($2 -> %L)) AS %I', k, k)
               WHEN v_types ->> k IN ('skiplock.retry_policy', 'skiplock.job_meta')
                   THEN format('($2 -> %L)::%s AS %I', k, v_types ->> k, k)
               ELSE format('($2 ->> %L)::%s AS %I', k, v_types ->> k, k) END, ', ')
    INTO v_once FROM unnest(v_names) AS k;
    EXECUTE format(
        'WITH s AS MATERIALIZED (SELECT %s), inserted AS ('
        'INSERT INTO skiplock.jobs (task, args%s) SELECT %s FROM s, jsonb_array_elements($1) AS j '
        'RETURNING id) SELECT array_agg(id ORDER BY id) FROM inserted',
        coalesce(v_once, '1 AS none'),
        (SELECT string_agg(', ' || quote_ident(k), '') FROM unnest(v_names) AS k
         WHERE k <> 'task'),
        CASE WHEN 'task' = ANY (v_names) THEN 's.task, j.value'
             ELSE 'j.value ->> 0, j.value -> 1' END
        || coalesce((SELECT string_agg(', s.' || quote_ident(k), '') FROM unnest(v_names) AS k
                     WHERE k <> 'task'), ''))
    INTO v_ids USING p_jobs, p_shared;
    RETURN v_ids;
END
$$;

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
-- Not planned per call: its arrays (tags, depends_on) hold one job's few values, and a
-- plan per call would tax every single enqueue.
CREATE OR REPLACE FUNCTION skiplock.enqueue(
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
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
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
        PERFORM skiplock._settle_waiting_jobs(ARRAY[v_id], now());
    END IF;
    RETURN v_id;
END
$$;

-- enqueue_many: add many jobs in one statement; returns their ids in input order.
-- p_jobs is a JSON array of objects with enqueue's parameter names as keys
-- ({"task": "a", "args": {…}, "queue": …, "priority": …, "run_at": …, "delay": seconds,
-- "max_attempts": …, "retry_policy": {…}, "timeout": seconds, "tags": […], "meta": {…},
-- "unique_key": …, "unique_scope": …, "unique_for": seconds, "expires_at": …,
-- "expires_in": seconds, "depends_on": […], "on_dependency_failure": …,
-- "callback_url": …}). One bad job rejects the whole call.
CREATE OR REPLACE FUNCTION skiplock.enqueue_many(p_jobs jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_job record;
BEGIN
    -- A unique key or dependencies need enqueue's rules for each job, in input order
    -- (a later job may share an earlier one's key): one enqueue per job.
    IF jsonb_path_exists(p_jobs, '$[*] ? (exists(@.unique_key) || exists(@.depends_on))') THEN
        FOR v_job IN
            SELECT * FROM jsonb_to_recordset(p_jobs) AS x(
                task text, args jsonb, queue text, priority integer, run_at timestamptz,
                delay float8, max_attempts integer, retry_policy jsonb, timeout float8,
                tags text[], meta jsonb, unique_key text, unique_scope text, unique_for float8,
                expires_at timestamptz, expires_in float8, depends_on bigint[],
                on_dependency_failure text, callback_url text)
        LOOP
            RETURN NEXT skiplock.enqueue(
                v_job.task, v_job.args, queue => v_job.queue, priority => v_job.priority,
                run_at => v_job.run_at, delay => make_interval(secs => v_job.delay),
                max_attempts => v_job.max_attempts, retry_policy => v_job.retry_policy,
                timeout => make_interval(secs => v_job.timeout), tags => v_job.tags,
                meta => v_job.meta, unique_key => v_job.unique_key,
                unique_scope => v_job.unique_scope,
                unique_for => make_interval(secs => v_job.unique_for),
                expires_at => v_job.expires_at,
                expires_in => make_interval(secs => v_job.expires_in),
                depends_on => v_job.depends_on,
                on_dependency_failure => v_job.on_dependency_failure,
                callback_url => v_job.callback_url);
        END LOOP;
        RETURN;
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO skiplock.jobs (task, args, queue, priority, run_at, max_attempts,
                                   retry_policy, timeout, tags, meta, expires_at,
                                   on_dependency_failure, callback_url)
        SELECT j.task, coalesce(j.args, '{}'), coalesce(j.queue, 'default'),
               coalesce(j.priority, 0),
               coalesce(j.run_at, now()) + make_interval(secs => coalesce(j.delay, 0)),
               coalesce(j.max_attempts, 20), j.retry_policy,
               make_interval(secs => j.timeout), coalesce(j.tags, '{}'),
               coalesce(j.meta, '{}'),
               coalesce(j.expires_at, now() + make_interval(secs => j.expires_in)),
               coalesce(j.on_dependency_failure, 'fail')::skiplock.dependency_policy,
               j.callback_url
        FROM jsonb_to_recordset(p_jobs) AS j(
                 task text, args jsonb, queue text, priority integer, run_at timestamptz,
                 delay float8, max_attempts integer, retry_policy jsonb, timeout float8,
                 tags text[], meta jsonb, expires_at timestamptz, expires_in float8,
                 on_dependency_failure text, callback_url text)
        RETURNING id
    )
    -- ids come from one sequence in row order, so sorting them gives input order
    SELECT i.id FROM inserted i ORDER BY i.id;
END
$$;
