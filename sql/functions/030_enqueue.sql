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

-- _task_defaults (internal): the published default job options of task p_task ('{}'
-- when no worker has published it), with its queue. One primary-key lookup.
CREATE OR REPLACE FUNCTION skiplock._task_defaults(p_task text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT t.defaults || jsonb_build_object('queue', t.queue)
                     FROM skiplock.tasks t WHERE t.name = p_task), '{}')
$$;

-- _default_max_attempts (internal): the attempts a job of queue p_queue gets when it
-- gives none and its task publishes none: the queue's max_attempts (set_queue_defaults),
-- else the built-in 20. One primary-key lookup; the one place the built-in value is
-- written. One row, returned as a set so that callers read it as `(SELECT m FROM
-- skiplock._default_max_attempts(queue) m)` and PostgreSQL inlines it into their query:
-- a scalar SQL function holding a subquery is never inlined, and calling it once a job
-- made bulk inserts markedly slower (docs/performance.md).
CREATE OR REPLACE FUNCTION skiplock._default_max_attempts(p_queue text) RETURNS SETOF integer
LANGUAGE sql STABLE ROWS 1 AS $$
    SELECT coalesce((SELECT q.max_attempts FROM skiplock.queues q WHERE q.name = p_queue), 20)
$$;

-- _resolve_jobs (internal): give the jobs p_ids (rows that left queue, priority or
-- max_attempts out: NULL there is the marker) every option they left out, from their
-- task's published defaults, then the built-in values (queue 'default', priority 0;
-- max_attempts from _default_max_attempts). "Left out" is NULL, and empty for tags and
-- meta: a plain INSERT cannot tell `queue = 'default'` given from the column default, so the columns that
-- had one have none, and a row that names queue, priority and max_attempts is taken as
-- written (enqueue, enqueue_many, insert_jobs and the Python COPY resolve their rows
-- before they insert them, and never pay this UPDATE). Retry policy and timeout left
-- unset after this fall back to the queue's defaults where they are used.
-- One generic plan, kept for the session: its one array, in `id = ANY (p_ids)`, is read
-- by the primary key whatever its size (no join for a generic plan to get wrong), and
-- planning this UPDATE cost more than running it for one row. The task's defaults are
-- read once a row (OFFSET 0 keeps the subquery whole; pulled up, each `d.o` below called
-- _task_defaults again). A plain INSERT of one row that leaves its options out: ~600 ->
-- ~140 us of server time, of 1,000 rows ~178 -> ~21 us a row (docs/performance.md).
CREATE OR REPLACE FUNCTION skiplock._resolve_jobs(p_ids bigint[]) RETURNS void
LANGUAGE sql
SET plan_cache_mode = force_generic_plan
AS $$
    UPDATE skiplock.jobs j
    SET (queue, priority, max_attempts, retry_policy, timeout, tags, meta, callback_url) = (
        SELECT coalesce(j.queue, d.o ->> 'queue', 'default'),
               coalesce(j.priority, (d.o ->> 'priority')::smallint, 0),
               coalesce(j.max_attempts, (d.o ->> 'max_attempts')::integer,
                        (SELECT m FROM skiplock._default_max_attempts(
                            coalesce(j.queue, d.o ->> 'queue', 'default')) m)),
               coalesce(j.retry_policy, d.o -> 'retry_policy'),
               coalesce(j.timeout, make_interval(secs => (d.o ->> 'timeout')::float8)),
               CASE WHEN j.tags = '{}'
                    THEN ARRAY(SELECT jsonb_array_elements_text(coalesce(d.o -> 'tags', '[]')))
                    ELSE j.tags END,
               CASE WHEN j.meta = '{}' THEN coalesce(d.o -> 'meta', '{}') ELSE j.meta END,
               coalesce(j.callback_url, d.o ->> 'callback_url')
        FROM (SELECT skiplock._task_defaults(j.task) AS o OFFSET 0) d)
    WHERE j.id = ANY (p_ids)
$$;

-- _jobs_created (internal): n jobs of task p_task went into queue p_queue: count them
-- (`created`) and register the queue if it is new. The one place both ways in take:
-- the insert trigger for each (queue, task) of a statement, and _jobs_enqueued for the
-- INSERT of enqueue or insert_jobs that the trigger skipped.
-- The queues INSERT runs only for a queue with no row yet: even when it inserts nothing
-- it is a noticeable share of a single-job insert. A queue another transaction is
-- registering (its row not committed yet) counts as new, and the INSERT waits for that
-- transaction.
CREATE OR REPLACE FUNCTION skiplock._jobs_created(p_queue text, p_task text, p_n bigint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO skiplock.job_counts (queue, task, event, n)
    VALUES (p_queue, p_task, 'created', p_n);
    IF NOT EXISTS (SELECT 1 FROM skiplock.queues q WHERE q.name = p_queue) THEN
        INSERT INTO skiplock.queues (name) VALUES (p_queue) ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- _jobs_enqueued (internal): the insert trigger's work for an INSERT it skipped, done
-- by enqueue and insert_jobs for the one queue and task they inserted p_n jobs of
-- (p_ready: ready to run now). They turn skiplock.enqueuing on for that INSERT, which
-- the trigger's WHEN skips outside any trigger; inside one the trigger runs as for any
-- insert, and this does nothing.
CREATE OR REPLACE FUNCTION skiplock._jobs_enqueued(p_queue text, p_task text, p_n bigint,
                                                   p_ready boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_trigger_depth() = 0 AND p_n > 0 THEN
        PERFORM skiplock._jobs_created(p_queue, p_task, p_n);
        IF p_ready THEN
            PERFORM skiplock._wake_workers(p_queue);
        END IF;
    END IF;
END
$$;

-- _jobs_inserted (trigger): after every statement that inserts jobs, whatever its row
-- count: resolve the rows that left options out (_resolve_jobs), take each (queue,
-- task) of the statement through _jobs_created, and wake the workers with one NOTIFY
-- on skiplock_jobs naming the queues that got ready jobs (_wake_workers). Plain INSERTs
-- and COPY from any language wake workers through it. The rows are grouped once, so
-- the trigger's work follows the number of groups, not of rows; the groups go in the
-- order of their names, so that two statements registering the same new queues take
-- them in one order and never wait for each other in a circle.
--
-- skiplock.enqueue, and insert_jobs for jobs of one task, do this for their own INSERT
-- (the trigger's statements, run from a transition table, cost a one-job call several
-- times what theirs do on values they hold; docs/performance.md): they turn
-- skiplock.enqueuing on for their INSERT, the trigger's WHEN skips that INSERT when it
-- runs outside any trigger, and they call _jobs_enqueued. One called from a trigger, or
-- an INSERT made by a trigger while theirs runs, goes through the trigger as any other.
CREATE OR REPLACE FUNCTION skiplock._jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_groups refcursor;
    v_group record;
    v_queues text;
    v_last text;
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows r
               WHERE r.queue IS NULL OR r.priority IS NULL OR r.max_attempts IS NULL) THEN
        PERFORM skiplock._resolve_jobs(ARRAY(
            SELECT r.id FROM new_rows r
            WHERE r.queue IS NULL OR r.priority IS NULL OR r.max_attempts IS NULL));
        -- the resolved values, read back by primary key
        OPEN v_groups FOR
            SELECT j.queue, j.task, count(*) AS n,
                   bool_or(j.state = 'queued' AND j.run_at <= now()) AS ready
            FROM skiplock.jobs j
            WHERE j.id = ANY (ARRAY(SELECT r.id FROM new_rows r))
            GROUP BY j.queue, j.task
            ORDER BY j.queue, j.task;
    ELSE
        -- resolving producers send no row to resolve: the transition table alone
        OPEN v_groups FOR
            SELECT r.queue, r.task, count(*) AS n,
                   bool_or(r.state = 'queued' AND r.run_at <= now()) AS ready
            FROM new_rows r
            GROUP BY r.queue, r.task
            ORDER BY r.queue, r.task;
    END IF;
    LOOP
        FETCH v_groups INTO v_group;
        EXIT WHEN NOT FOUND;
        PERFORM skiplock._jobs_created(v_group.queue, v_group.task, v_group.n);
        IF v_group.ready AND v_group.queue IS DISTINCT FROM v_last THEN
            v_queues := concat_ws(',', v_queues, v_group.queue);
            v_last := v_group.queue;
        END IF;
    END LOOP;
    CLOSE v_groups;
    PERFORM skiplock._wake_workers(v_queues);
    RETURN NULL;
END
$$;

-- _jobs_inserted: once per statement (see the function above).
CREATE OR REPLACE TRIGGER jobs_inserted AFTER INSERT ON skiplock.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (pg_trigger_depth() > 0
          OR current_setting('skiplock.enqueuing', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION skiplock._jobs_inserted();

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

-- _job_options (internal): the options of a job of task p_task that gives p_given (a
-- JSON object as insert_jobs takes it; durations as interval text), each left out taken
-- from the task's published defaults (durations in seconds), then the built-in value.
-- Given > the task's default > built-in, but max_attempts: given > the task's > the
-- queue's > 20 (_default_max_attempts); a retry policy or timeout still unset falls
-- back to the queue's where it is used. One primary-key lookup in skiplock.tasks (and
-- one in skiplock.queues when max_attempts is left to the queue).
CREATE OR REPLACE FUNCTION skiplock._job_options(p_given jsonb, p_task text)
RETURNS TABLE (queue skiplock.queue_name, priority smallint, run_at timestamptz,
               max_attempts integer, retry_policy skiplock.retry_policy, timeout interval,
               tags text[], meta skiplock.job_meta, expires_at timestamptz,
               callback_url skiplock.callback_url,
               on_dependency_failure skiplock.dependency_policy)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(p_given ->> 'queue', t.queue, 'default'),
           coalesce((p_given ->> 'priority')::smallint, (t.defaults ->> 'priority')::smallint, 0),
           coalesce((p_given ->> 'run_at')::timestamptz, now()),
           coalesce((p_given ->> 'max_attempts')::integer,
                    (t.defaults ->> 'max_attempts')::integer,
                    (SELECT m FROM skiplock._default_max_attempts(
                        coalesce(p_given ->> 'queue', t.queue, 'default')) m)),
           coalesce(p_given -> 'retry_policy', t.defaults -> 'retry_policy'),
           coalesce((p_given ->> 'timeout')::interval,
                    make_interval(secs => (t.defaults ->> 'timeout')::float8)),
           CASE WHEN jsonb_array_length(coalesce(p_given -> 'tags', '[]')) > 0
                THEN ARRAY(SELECT jsonb_array_elements_text(p_given -> 'tags'))
                ELSE ARRAY(SELECT jsonb_array_elements_text(coalesce(t.defaults -> 'tags', '[]')))
           END,
           CASE WHEN coalesce(p_given -> 'meta', '{}') <> '{}' THEN p_given -> 'meta'
                ELSE coalesce(t.defaults -> 'meta', '{}') END,
           (p_given ->> 'expires_at')::timestamptz,
           coalesce(p_given ->> 'callback_url', t.defaults ->> 'callback_url'),
           coalesce(t.defaults ->> 'on_dependency_failure', 'fail')::skiplock.dependency_policy
    FROM (SELECT) one LEFT JOIN skiplock.tasks t ON t.name = p_task
$$;

-- insert_jobs: the bulk producer's one INSERT, for jobs that share every option but
-- their args (and maybe their task); returns their ids in input order. p_shared holds
-- the shared options as JSON, the unset ones left out: task, queue, priority, run_at,
-- max_attempts, retry_policy, timeout ("30 seconds"), tags, meta, expires_at,
-- callback_url. What it leaves out each job takes from its task's published defaults,
-- then the built-in values, as enqueue does. p_jobs is an array of args objects when
-- p_shared has a task, else of [task, args] pairs. Options the table checks (names,
-- ranges, domains) raise as for a plain INSERT; an unknown option raises
-- invalid_parameter_value. The shared values, with one task's defaults, are resolved
-- once, in a MATERIALIZED CTE: their domain checks run once per statement, not once per
-- job. Ids come back in input order: rows are inserted in array order and a session's
-- nextval only grows. Wakes workers like any insert (one NOTIFY per statement).
CREATE OR REPLACE FUNCTION skiplock.insert_jobs(p_jobs jsonb, p_shared jsonb DEFAULT '{}')
RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_known CONSTANT text[] := ARRAY['task', 'queue', 'priority', 'run_at', 'max_attempts',
        'retry_policy', 'timeout', 'tags', 'meta', 'expires_at', 'callback_url'];
    v_unknown text;
    v_ids bigint[];
    v_queue text;
    v_ready boolean;
BEGIN
    p_shared := coalesce(p_shared, '{}');
    -- an expression, not a query, on the way of every call; the names only for the error
    IF p_shared - v_known <> '{}' THEN
        SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown
        FROM jsonb_object_keys(p_shared - v_known) AS k;
        RAISE EXCEPTION 'insert_jobs: unknown option(s) %', v_unknown
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One task for all jobs: its options resolved once (MATERIALIZED), so their domain
    -- checks run once per statement, and one queue, counted and woken here
    -- (_jobs_enqueued). [task, args] pairs: per job, in input order, through the trigger.
    IF p_shared ? 'task' THEN
        PERFORM set_config('skiplock.enqueuing', 'on', true);
        WITH o AS MATERIALIZED (
            SELECT (p_shared ->> 'task')::skiplock.task_name AS task, *
            FROM skiplock._job_options(p_shared, p_shared ->> 'task')
        ), inserted AS (
            INSERT INTO skiplock.jobs (task, args, queue, priority, run_at, max_attempts,
                                       retry_policy, timeout, tags, meta, expires_at,
                                       callback_url, on_dependency_failure)
            SELECT o.task, j.value, o.queue, o.priority,
                   o.run_at, o.max_attempts, o.retry_policy, o.timeout, o.tags, o.meta,
                   o.expires_at, o.callback_url, o.on_dependency_failure
            FROM o, jsonb_array_elements(p_jobs) AS j
            RETURNING id
        )
        SELECT (SELECT array_agg(id ORDER BY id) FROM inserted), o.queue, o.run_at <= now()
        INTO v_ids, v_queue, v_ready
        FROM o;
        PERFORM set_config('skiplock.enqueuing', 'off', true);
        PERFORM skiplock._jobs_enqueued(v_queue, p_shared ->> 'task',
                                        coalesce(cardinality(v_ids), 0), v_ready);
        RETURN v_ids;
    END IF;
    WITH inserted AS (
        INSERT INTO skiplock.jobs (task, args, queue, priority, run_at, max_attempts,
                                   retry_policy, timeout, tags, meta, expires_at,
                                   callback_url, on_dependency_failure)
        SELECT j.value ->> 0, j.value -> 1, o.queue, o.priority, o.run_at, o.max_attempts,
               o.retry_policy, o.timeout, o.tags, o.meta, o.expires_at, o.callback_url,
               o.on_dependency_failure
        FROM jsonb_array_elements(p_jobs) AS j
        CROSS JOIN LATERAL (SELECT * FROM skiplock._job_options(p_shared, j.value ->> 0)
                            OFFSET 0) o
        RETURNING id
    )
    SELECT array_agg(id ORDER BY id) INTO v_ids FROM inserted;
    RETURN v_ids;
END
$$;

-- enqueue: add one job; returns its id. Joins the caller's transaction: rolled back, no
-- job. Parameters are named for use as `queue => 'emails'`. Each option left NULL takes
-- the task's published default (one primary-key lookup in skiplock.tasks), then the
-- built-in one (queue 'default', priority 0, max_attempts the queue's else 20 as
-- _default_max_attempts says, on_dependency_failure 'fail'): NULL is "not given", so a
-- caller who passes 'default' keeps it. run_at and delay add up (run_at defaults to
-- now()). Bad input raises (check constraints name the rule).
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
    queue        text DEFAULT NULL,
    priority     integer DEFAULT NULL,
    run_at       timestamptz DEFAULT NULL,
    delay        interval DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
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
    on_dependency_failure text DEFAULT NULL,
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
    v_queue text;
    v_ready boolean;
BEGIN
    IF unique_key IS NOT NULL THEN
        -- the callback URL is checked before the key is written
        PERFORM coalesce(enqueue.callback_url,
                         skiplock._task_defaults(task) ->> 'callback_url')::skiplock.callback_url;
        v_scope := CASE WHEN unique_for IS NOT NULL THEN 'period'
                        ELSE coalesce(unique_scope, 'active') END;
        IF unique_scope IS NOT NULL AND unique_for IS NOT NULL AND unique_scope <> 'period' THEN
            RAISE EXCEPTION 'unique_for goes with unique_scope ''period'', got %', unique_scope
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_id := nextval('skiplock.jobs_id_seq'::regclass);
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

    -- The insert trigger skips this INSERT (see _jobs_inserted); the setting is local to
    -- the transaction, so an error before it is turned off again rolls it back too. (A
    -- SET clause on the function would be cheaper, but only a superuser, or a role
    -- granted SET on the parameter, may create a function that sets a custom one.)
    PERFORM set_config('skiplock.enqueuing', 'on', true);
    -- The task's published defaults (t) are read in the INSERT itself and the id comes
    -- from the sequence by name: a lookup before it and pg_get_serial_sequence() per call
    -- were a tenth of a single enqueue's server time (bench/insert_costs.py).
    INSERT INTO skiplock.jobs (id, task, args, queue, priority, run_at, max_attempts,
                               retry_policy, timeout, tags, meta, unique_key, expires_at,
                               depends_on, on_dependency_failure, state, callback_url)
    SELECT coalesce(v_id, nextval('skiplock.jobs_id_seq'::regclass)),
           enqueue.task, coalesce(enqueue.args, '{}'), o.queue,
           coalesce(enqueue.priority, (t.defaults ->> 'priority')::integer, 0),
           coalesce(enqueue.run_at, now())
               + coalesce(enqueue.delay, make_interval(secs => (t.defaults ->> 'delay')::float8),
                          interval '0'),
           coalesce(enqueue.max_attempts, (t.defaults ->> 'max_attempts')::integer,
                    (SELECT m FROM skiplock._default_max_attempts(o.queue) m)),
           coalesce(enqueue.retry_policy, t.defaults -> 'retry_policy'),
           coalesce(enqueue.timeout, make_interval(secs => (t.defaults ->> 'timeout')::float8)),
           -- the subquery only for a task that publishes tags: run for '[]', it was a
           -- noticeable part of a one-job call
           CASE WHEN cardinality(enqueue.tags) > 0 THEN enqueue.tags
                WHEN t.defaults ? 'tags'
                THEN ARRAY(SELECT jsonb_array_elements_text(t.defaults -> 'tags'))
                ELSE '{}' END,
           CASE WHEN enqueue.meta IS NOT NULL AND enqueue.meta <> '{}' THEN enqueue.meta
                ELSE coalesce(t.defaults -> 'meta', '{}') END,
           enqueue.unique_key,
           coalesce(enqueue.expires_at,
                    now() + coalesce(enqueue.expires_in,
                                     make_interval(secs => (t.defaults ->> 'expires_in')::float8))),
           nullif(enqueue.depends_on, '{}'),
           coalesce(enqueue.on_dependency_failure, t.defaults ->> 'on_dependency_failure', 'fail')
           ::skiplock.dependency_policy,
           CASE WHEN cardinality(enqueue.depends_on) > 0 THEN 'waiting' ELSE 'queued' END
           ::skiplock.job_state,
           coalesce(enqueue.callback_url, t.defaults ->> 'callback_url')
    FROM (SELECT) one
    LEFT JOIN skiplock.tasks t ON t.name = enqueue.task
    CROSS JOIN LATERAL (SELECT coalesce(enqueue.queue, t.queue, 'default') AS queue) o
    RETURNING jobs.id, jobs.queue, jobs.state = 'queued' AND jobs.run_at <= now()
    INTO v_id, v_queue, v_ready;
    PERFORM set_config('skiplock.enqueuing', 'off', true);
    PERFORM skiplock._jobs_enqueued(v_queue, enqueue.task, 1, v_ready);

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
        SELECT j.task, coalesce(j.args, '{}'), coalesce(j.queue, t.queue, 'default'),
               coalesce(j.priority, (t.defaults ->> 'priority')::integer, 0),
               coalesce(j.run_at, now())
                   + make_interval(secs => coalesce(j.delay, (t.defaults ->> 'delay')::float8, 0)),
               coalesce(j.max_attempts, (t.defaults ->> 'max_attempts')::integer,
                        (SELECT m FROM skiplock._default_max_attempts(
                            coalesce(j.queue, t.queue, 'default')) m)),
               coalesce(j.retry_policy, t.defaults -> 'retry_policy'),
               make_interval(secs => coalesce(j.timeout, (t.defaults ->> 'timeout')::float8)),
               CASE WHEN cardinality(j.tags) > 0 THEN j.tags
                    ELSE ARRAY(SELECT jsonb_array_elements_text(
                                   coalesce(t.defaults -> 'tags', '[]'))) END,
               CASE WHEN j.meta IS NOT NULL AND j.meta <> '{}' THEN j.meta
                    ELSE coalesce(t.defaults -> 'meta', '{}') END,
               coalesce(j.expires_at,
                        now() + make_interval(secs => coalesce(
                            j.expires_in, (t.defaults ->> 'expires_in')::float8))),
               coalesce(j.on_dependency_failure, t.defaults ->> 'on_dependency_failure',
                        'fail')::skiplock.dependency_policy,
               coalesce(j.callback_url, t.defaults ->> 'callback_url')
        FROM jsonb_to_recordset(p_jobs) AS j(
                 task text, args jsonb, queue text, priority integer, run_at timestamptz,
                 delay float8, max_attempts integer, retry_policy jsonb, timeout float8,
                 tags text[], meta jsonb, expires_at timestamptz, expires_in float8,
                 on_dependency_failure text, callback_url text)
        -- the task's published defaults for what the job leaves out: a primary-key lookup
        -- per job (OFFSET 0 keeps it one, not a join that may reorder the rows)
        LEFT JOIN LATERAL (SELECT k.queue, k.defaults FROM skiplock.tasks k
                           WHERE k.name = j.task OFFSET 0) t ON true
        RETURNING id
    )
    -- ids come from one sequence in row order, so sorting them gives input order
    SELECT i.id FROM inserted i ORDER BY i.id;
END
$$;
