-- skiplock 0001: the core queue.
--
-- Three tables hold every job, and a job lives in exactly one of them:
--   jobs         the hot table: waiting, queued (incl. scheduled and retrying) and running
--                jobs only, so the claim index stays small and in memory;
--   job_history  finished jobs: succeeded, cancelled, expired, with their result;
--   dead_jobs    the dead letters: jobs that failed their last attempt.
-- Every way a job moves between states is one function below; read them in order:
-- enqueue → claim_jobs → heartbeat_jobs → complete_jobs | fail_jobs | release_jobs,
-- rescue_expired_jobs, cancel_job, retry_job.

CREATE TYPE skiplock.job_state AS ENUM ('waiting', 'queued', 'running');
CREATE TYPE skiplock.finished_status AS ENUM ('succeeded', 'cancelled', 'expired');
-- How long a unique key keeps out other jobs with the same key: until the job starts
-- (queued), until it finishes (active), or until a period after it finishes (period).
CREATE TYPE skiplock.unique_scope AS ENUM ('queued', 'active', 'period');
-- What a waiting job does when a job it depends on fails, is cancelled or expires.
CREATE TYPE skiplock.dependency_policy AS ENUM ('fail', 'cancel', 'run');

-- A retry policy is a small JSON object so that SQL callers can write one inline:
--   {"kind": "exponential" | "linear" | "fixed",   default exponential
--    "base": seconds,                              default 1
--    "max_delay": seconds,                         default 3600
--    "jitter": 0..1}                               default 0.1, fraction taken off at random
CREATE FUNCTION skiplock.retry_policy_is_valid(p_policy jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(p_policy) = 'object'
       AND NOT EXISTS (SELECT 1 FROM jsonb_object_keys(p_policy) k
                       WHERE k NOT IN ('kind', 'base', 'max_delay', 'jitter'))
       AND coalesce(p_policy->>'kind', 'exponential') IN ('exponential', 'linear', 'fixed')
       AND coalesce(jsonb_typeof(p_policy->'base'), 'number') = 'number'
       AND coalesce(jsonb_typeof(p_policy->'max_delay'), 'number') = 'number'
       AND coalesce(jsonb_typeof(p_policy->'jitter'), 'number') = 'number'
       AND coalesce((p_policy->>'base')::float8, 1) >= 0
       AND coalesce((p_policy->>'max_delay')::float8, 3600) >= 0
       AND coalesce((p_policy->>'jitter')::float8, 0.1) BETWEEN 0 AND 1
$$;

-- The delay before attempt p_attempt + 1, after attempt p_attempt (1-based) failed.
-- exponential: base * 2^(attempt-1); linear: base * attempt; fixed: base. Capped at
-- max_delay, then up to `jitter` of it is taken off at random so that a burst of
-- failures does not come back as a burst.
CREATE FUNCTION skiplock.retry_delay(p_policy jsonb, p_attempt integer) RETURNS interval
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

-- Input rules live on domains, not table CHECKs: a domain is checked when a value is
-- assigned, a table CHECK on every UPDATE of the row. Re-checking these on each claim
-- and heartbeat cost about 40% of the claim (measured: 200-row claim 6.5 ms → 3.5 ms).
CREATE DOMAIN skiplock.task_name AS text
    CONSTRAINT task_name_valid CHECK (VALUE ~ '^[A-Za-z0-9_.:/-]{1,200}$');
CREATE DOMAIN skiplock.queue_name AS text
    CONSTRAINT queue_name_valid CHECK (VALUE ~ '^[A-Za-z0-9_.:-]{1,64}$');
CREATE DOMAIN skiplock.job_args AS jsonb
    CONSTRAINT args_is_object CHECK (jsonb_typeof(VALUE) = 'object');
CREATE DOMAIN skiplock.job_meta AS jsonb
    CONSTRAINT meta_is_object CHECK (jsonb_typeof(VALUE) = 'object');
CREATE DOMAIN skiplock.retry_policy AS jsonb
    CONSTRAINT retry_policy_valid CHECK (VALUE IS NULL OR skiplock.retry_policy_is_valid(VALUE));

CREATE TABLE skiplock.queues (
    name              skiplock.queue_name PRIMARY KEY,
    paused            boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    -- Limits across all workers, enforced inside claim_jobs (NULL: none). A queue with
    -- a limit is claimed under its row lock, so concurrent claimers cannot overshoot.
    max_running       integer,
    rate_limit        integer,
    rate_period       interval,
    -- the current fixed rate window: when it began and how many jobs started in it
    rate_window_start timestamptz,
    rate_window_count integer NOT NULL DEFAULT 0,
    CONSTRAINT max_running_positive CHECK (max_running IS NULL OR max_running >= 1),
    CONSTRAINT rate_limit_complete CHECK (
        (rate_limit IS NULL) = (rate_period IS NULL)
        AND (rate_limit IS NULL OR (rate_limit >= 1 AND rate_period > interval '0')))
);

CREATE TABLE skiplock.jobs (
    id                  bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task                skiplock.task_name NOT NULL,
    args                skiplock.job_args NOT NULL DEFAULT '{}',
    queue               skiplock.queue_name NOT NULL DEFAULT 'default',
    -- higher runs first
    priority            smallint NOT NULL DEFAULT 0,
    state               skiplock.job_state NOT NULL DEFAULT 'queued',
    run_at              timestamptz NOT NULL DEFAULT now(),
    -- attempts started so far; the claim increments it
    attempt             integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 20,
    retry_policy        skiplock.retry_policy,
    timeout             interval,
    tags                text[] NOT NULL DEFAULT '{}',
    meta                skiplock.job_meta NOT NULL DEFAULT '{}',
    -- set by enqueue(unique_key => …); the key itself is held in skiplock.unique_keys
    unique_key          text,
    -- the job is not started after this; expire_jobs ends it `expired`
    expires_at          timestamptz,
    -- jobs that must succeed before this one runs (it is `waiting` until then)
    depends_on          bigint[],
    on_dependency_failure skiplock.dependency_policy NOT NULL DEFAULT 'fail',
    -- one entry per failed attempt: {"attempt", "at", "worker_id", "error", "traceback"}
    errors              jsonb NOT NULL DEFAULT '[]',
    progress            jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    -- the lease: (worker_id, attempt) is the fencing token of a running job
    worker_id           uuid,
    lease_expires_at    timestamptz,
    cancel_requested_at timestamptz,
    CONSTRAINT priority_in_range CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT max_attempts_positive CHECK (max_attempts >= 1),
    CONSTRAINT attempt_in_range CHECK (attempt BETWEEN 0 AND max_attempts),
    CONSTRAINT timeout_positive CHECK (timeout IS NULL OR timeout > interval '0'),
    CONSTRAINT running_has_lease
        CHECK ((state = 'running') = (worker_id IS NOT NULL AND lease_expires_at IS NOT NULL))
) WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_vacuum_insert_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05);

-- The claim walks this index in order, per queue; only ready-to-claim rows are in it.
CREATE INDEX jobs_claim_idx ON skiplock.jobs (queue, priority DESC, run_at, id)
    WHERE state = 'queued';
-- Running rows by owner: heartbeats and rescue read the (small) running set. The lease
-- expiry is deliberately not indexed so that a heartbeat can be a HOT update.
CREATE INDEX jobs_running_idx ON skiplock.jobs (worker_id) WHERE state = 'running';
-- Waiting jobs, for the dependency sweep.
CREATE INDEX jobs_waiting_idx ON skiplock.jobs (id) WHERE state = 'waiting';
-- Jobs with a deadline, for expire_jobs.
CREATE INDEX jobs_expires_idx ON skiplock.jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE skiplock.job_history (
    id           bigint PRIMARY KEY,
    task         text NOT NULL,
    args         jsonb NOT NULL,
    queue        text NOT NULL,
    priority     smallint NOT NULL,
    status       skiplock.finished_status NOT NULL,
    attempt      integer NOT NULL,
    max_attempts integer NOT NULL,
    retry_policy jsonb,
    timeout      interval,
    tags         text[] NOT NULL,
    meta         jsonb NOT NULL,
    unique_key   text,
    expires_at   timestamptz,
    depends_on   bigint[],
    errors       jsonb NOT NULL,
    progress     jsonb,
    result       jsonb,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    finished_at  timestamptz NOT NULL,
    worker_id    uuid
);
CREATE INDEX job_history_finished_at_idx ON skiplock.job_history (finished_at);

CREATE TABLE skiplock.dead_jobs (
    id           bigint PRIMARY KEY,
    task         text NOT NULL,
    args         jsonb NOT NULL,
    queue        text NOT NULL,
    priority     smallint NOT NULL,
    attempt      integer NOT NULL,
    max_attempts integer NOT NULL,
    retry_policy jsonb,
    timeout      interval,
    tags         text[] NOT NULL,
    meta         jsonb NOT NULL,
    unique_key   text,
    expires_at   timestamptz,
    depends_on   bigint[],
    errors       jsonb NOT NULL,
    progress     jsonb,
    created_at   timestamptz NOT NULL,
    started_at   timestamptz,
    failed_at    timestamptz NOT NULL,
    worker_id    uuid
);
CREATE INDEX dead_jobs_failed_at_idx ON skiplock.dead_jobs (failed_at);

-- Finished-job totals per queue and status since install, kept by statement triggers so
-- that stats never count the history table.
CREATE TABLE skiplock.queue_totals (
    queue  text NOT NULL,
    status text NOT NULL,
    total  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (queue, status)
);

-- Unique keys held by jobs. The primary key is the whole enforcement: enqueue inserts
-- the key with ON CONFLICT, so concurrent enqueues of one key wait for each other and
-- exactly one job is created; a rolled-back holder leaves no row behind. A key is
-- released when its job starts (queued), finishes (active), or at holds_until (period).
CREATE TABLE skiplock.unique_keys (
    key         text PRIMARY KEY,
    job_id      bigint NOT NULL,
    scope       skiplock.unique_scope NOT NULL,
    period      interval,
    holds_until timestamptz,
    CONSTRAINT unique_key_length CHECK (octet_length(key) BETWEEN 1 AND 512),
    CONSTRAINT unique_period_matches_scope
        CHECK ((scope = 'period') = (period IS NOT NULL AND period > interval '0'))
);
CREATE INDEX unique_keys_job_idx ON skiplock.unique_keys (job_id);

-- The dependencies a waiting job still waits on: one row per (job, dependency) until the
-- dependency succeeds. Empty unless dependencies are used, so finishing jobs costs
-- nothing extra otherwise.
CREATE TABLE skiplock.job_dependencies (
    depends_on bigint NOT NULL,
    job_id     bigint NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX job_dependencies_job_idx ON skiplock.job_dependencies (job_id);

CREATE TABLE skiplock.workers (
    id                uuid PRIMARY KEY,
    host              text NOT NULL,
    pid               integer NOT NULL,
    queues            text[] NOT NULL,
    concurrency       integer NOT NULL,
    version           text NOT NULL,
    started_at        timestamptz NOT NULL DEFAULT now(),
    last_heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Wake-ups. One NOTIFY per statement, whatever the row count; the payload is the
-- comma-separated queues that got ready jobs, or '*' when that would not fit in a
-- NOTIFY payload. Plain INSERTs from any language wake workers through this trigger.
CREATE FUNCTION skiplock.jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_queues text;
BEGIN
    INSERT INTO skiplock.queues (name)
    SELECT DISTINCT queue FROM new_rows
    ON CONFLICT DO NOTHING;

    SELECT string_agg(DISTINCT queue, ',') INTO v_queues
    FROM new_rows WHERE state = 'queued' AND run_at <= now();
    IF v_queues IS NOT NULL THEN
        PERFORM pg_notify('skiplock_jobs',
                          CASE WHEN octet_length(v_queues) > 4000 THEN '*' ELSE v_queues END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON skiplock.jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.jobs_inserted();

-- Finished jobs: count them, and tell result waiters (channel skiplock_finished, payload
-- the comma-separated ids, or '*' when too many for one payload).
CREATE FUNCTION skiplock.jobs_finished() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_ids text;
BEGIN
    IF TG_TABLE_NAME = 'dead_jobs' THEN
        INSERT INTO skiplock.queue_totals (queue, status, total)
        SELECT queue, 'failed', count(*) FROM new_rows GROUP BY queue ORDER BY queue
        ON CONFLICT (queue, status) DO UPDATE SET total = queue_totals.total + excluded.total;
    ELSE
        INSERT INTO skiplock.queue_totals (queue, status, total)
        SELECT queue, status::text, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (queue, status) DO UPDATE SET total = queue_totals.total + excluded.total;
    END IF;

    SELECT string_agg(id::text, ',') INTO v_ids FROM new_rows;
    IF v_ids IS NOT NULL THEN
        PERFORM pg_notify('skiplock_finished',
                          CASE WHEN octet_length(v_ids) > 7000 THEN '*' ELSE v_ids END);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER job_history_inserted AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.jobs_finished();
CREATE TRIGGER dead_jobs_inserted AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock.jobs_finished();


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
    on_dependency_failure text DEFAULT 'fail'
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_scope skiplock.unique_scope;
    v_missing bigint[];
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
                               depends_on, on_dependency_failure, state)
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
            ::skiplock.job_state)
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

-- enqueue_many: add many jobs in one statement; returns their ids in input order.
-- p_jobs is a JSON array of objects with enqueue's parameter names as keys
-- ({"task": "a", "args": {…}, "queue": …, "priority": …, "run_at": …, "delay": seconds,
-- "max_attempts": …, "retry_policy": {…}, "timeout": seconds, "tags": […], "meta": {…},
-- "expires_at": …, "expires_in": seconds}).
-- One bad job rejects the whole call.
CREATE FUNCTION skiplock.enqueue_many(p_jobs jsonb) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_path_exists(p_jobs, '$[*] ? (exists(@.unique_key) || exists(@.depends_on))') THEN
        RAISE EXCEPTION 'enqueue_many does not take unique_key or depends_on; enqueue those jobs one by one'
            USING ERRCODE = 'feature_not_supported';
    END IF;
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO skiplock.jobs (task, args, queue, priority, run_at, max_attempts,
                                   retry_policy, timeout, tags, meta, expires_at)
        SELECT j.task, coalesce(j.args, '{}'), coalesce(j.queue, 'default'),
               coalesce(j.priority, 0),
               coalesce(j.run_at, now()) + make_interval(secs => coalesce(j.delay, 0)),
               coalesce(j.max_attempts, 20), j.retry_policy,
               make_interval(secs => j.timeout), coalesce(j.tags, '{}'),
               coalesce(j.meta, '{}'),
               coalesce(j.expires_at, now() + make_interval(secs => j.expires_in))
        FROM jsonb_to_recordset(p_jobs) AS j(
                 task text, args jsonb, queue text, priority integer, run_at timestamptz,
                 delay float8, max_attempts integer, retry_policy jsonb, timeout float8,
                 tags text[], meta jsonb, expires_at timestamptz, expires_in float8)
        RETURNING id
    )
    -- ids come from one sequence in row order, so sorting them gives input order
    SELECT i.id FROM inserted i ORDER BY i.id;
END
$$;

-- claim_jobs: take up to p_limit ready jobs from p_queues for worker p_worker_id, highest
-- priority first, then oldest run_at. Locks with FOR UPDATE SKIP LOCKED, so concurrent
-- claimers never block each other and never get the same job; paused queues are
-- skipped. Each claimed job becomes running, its attempt is incremented and it gets a
-- lease until now + p_lease. (worker_id, attempt) is the fencing token every later call
-- checks. Returns the claimed jobs; none when nothing is ready.
CREATE FUNCTION skiplock.claim_jobs(
    p_worker_id uuid, p_queues text[], p_limit integer,
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, task text, args jsonb, queue text, priority smallint,
                 attempt integer, max_attempts integer, timeout interval,
                 created_at timestamptz, tags text[], meta jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_limited text[];
    v_budgets integer[];
BEGIN
    -- Queues with limits: lock their rows (claimers of a limited queue take turns) and
    -- work out how many jobs each may start now. Unlimited queues skip all of this.
    IF EXISTS (SELECT 1 FROM skiplock.queues lq WHERE lq.name = ANY (p_queues)
               AND (lq.max_running IS NOT NULL OR lq.rate_limit IS NOT NULL)) THEN
        -- Lock first, count after: the counting statement must take its snapshot once
        -- the previous claimer of this queue has committed, or it would not see that
        -- claimer's jobs running.
        PERFORM 1 FROM skiplock.queues lq
        WHERE lq.name = ANY (p_queues)
          AND (lq.max_running IS NOT NULL OR lq.rate_limit IS NOT NULL)
        ORDER BY lq.name
        FOR UPDATE;
        UPDATE skiplock.queues lq
        SET rate_window_start = v_now, rate_window_count = 0
        WHERE lq.name = ANY (p_queues) AND lq.rate_limit IS NOT NULL
          AND (lq.rate_window_start IS NULL OR lq.rate_window_start + lq.rate_period <= v_now);
        SELECT array_agg(lq.name), array_agg(greatest(0, least(
                   lq.max_running - (SELECT count(*) FROM skiplock.jobs r
                                     WHERE r.state = 'running' AND r.queue = lq.name),
                   lq.rate_limit - lq.rate_window_count)))
        INTO v_limited, v_budgets
        FROM skiplock.queues lq
        WHERE lq.name = ANY (p_queues)
          AND (lq.max_running IS NOT NULL OR lq.rate_limit IS NOT NULL);
    END IF;

    -- The pick walks jobs_claim_idx per queue (LATERAL) and the UPDATE then probes the
    -- primary key for exactly the picked ids (= ANY(ARRAY(...)) keeps the planner from
    -- turning the pick into a semi-join over the whole table).
    RETURN QUERY
    WITH claimed AS (
    UPDATE skiplock.jobs j
    SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker_id,
        started_at = v_now, lease_expires_at = v_now + p_lease, progress = NULL
    WHERE j.id = ANY (ARRAY(
        SELECT picked.id
        FROM unnest(p_queues) AS q(name)
        LEFT JOIN unnest(v_limited, v_budgets) AS budget(name, jobs) ON budget.name = q.name
        CROSS JOIN LATERAL (
            SELECT c.id, c.priority, c.run_at
            FROM skiplock.jobs c
            WHERE c.queue = q.name AND c.state = 'queued' AND c.run_at <= v_now
              AND (c.expires_at IS NULL OR c.expires_at > v_now)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT least(p_limit, coalesce(budget.jobs, p_limit))
            FOR UPDATE SKIP LOCKED
        ) picked
        WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq WHERE pq.name = q.name AND pq.paused)
        ORDER BY picked.priority DESC, picked.run_at, picked.id
        LIMIT p_limit))
    RETURNING j.*
    ), started AS (
        -- keys held "while queued" are free once the job starts
        DELETE FROM skiplock.unique_keys k
        WHERE k.job_id = ANY (ARRAY(SELECT c.id FROM claimed c WHERE c.unique_key IS NOT NULL))
          AND k.scope = 'queued'
    ), counted AS (
        -- starts count against the rate window of rate-limited queues (rows locked above)
        UPDATE skiplock.queues lq
        SET rate_window_count = lq.rate_window_count + n.started
        FROM (SELECT c.queue, count(*)::integer AS started FROM claimed c
              WHERE c.queue = ANY (v_limited) GROUP BY c.queue) n
        WHERE lq.name = n.queue AND lq.rate_limit IS NOT NULL
    )
    SELECT c.id, c.task::text, c.args::jsonb, c.queue::text, c.priority, c.attempt,
           c.max_attempts, c.timeout, c.created_at, c.tags, c.meta::jsonb
    FROM claimed c;
END
$$;

-- heartbeat_jobs: extend the leases of the listed running jobs of p_worker_id in one
-- statement and record the worker as alive. A job is extended only while it is still
-- running under this token, (p_worker_id, p_attempts[i]); the worker treats every listed
-- job missing from the result as lost and stops its handler. cancel_requested tells the
-- worker to cancel that handler.
CREATE FUNCTION skiplock.heartbeat_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[],
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, cancel_requested boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    UPDATE skiplock.workers w SET last_heartbeat_at = v_now WHERE w.id = p_worker_id;
    RETURN QUERY
    UPDATE skiplock.jobs j SET lease_expires_at = v_now + p_lease
    FROM unnest(p_ids, p_attempts) AS u(id, attempt)
    WHERE j.id = ANY (p_ids) AND j.id = u.id AND j.attempt = u.attempt
      AND j.worker_id = p_worker_id AND j.state = 'running'
    RETURNING j.id, j.cancel_requested_at IS NOT NULL;
END
$$;

-- release_unique_keys (internal): the jobs p_ids have finished: free the unique keys they
-- hold until they finish, and start the hold period of the others. Only keys still
-- held by these very jobs are touched.
CREATE FUNCTION skiplock.release_unique_keys(p_ids bigint[], p_now timestamptz)
RETURNS void
LANGUAGE sql AS $$
    DELETE FROM skiplock.unique_keys k WHERE k.job_id = ANY (p_ids) AND k.scope <> 'period';
    UPDATE skiplock.unique_keys k SET holds_until = p_now + k.period
    WHERE k.job_id = ANY (p_ids) AND k.scope = 'period' AND k.holds_until IS NULL;
$$;

-- jobs_left (internal): what follows jobs p_ids leaving the hot table for good, for
-- archive_jobs and bury_jobs alike: free the unique keys of p_keyed (the ids that carry
-- one) and settle the jobs waiting on p_ids.
CREATE FUNCTION skiplock.jobs_left(p_ids bigint[], p_keyed bigint[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_keyed IS NOT NULL THEN
        PERFORM skiplock.release_unique_keys(p_keyed, p_now);
    END IF;
    PERFORM skiplock.resolve_dependents(p_ids, p_now);
END
$$;

-- archive_jobs (internal): move rows out of the hot table into job_history with
-- p_status. The caller has already locked the rows and checked their fencing token.
-- p_results lines up with p_ids (NULL: no results). Returns the moved ids.
CREATE FUNCTION skiplock.archive_jobs(
    p_ids bigint[], p_status skiplock.finished_status, p_results jsonb[],
    p_now timestamptz
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_keyed bigint[];
BEGIN
    WITH moved AS (
        DELETE FROM skiplock.jobs j WHERE j.id = ANY (p_ids)
        RETURNING j.*
    ), archived AS (
        INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,
            max_attempts, retry_policy, timeout, tags, meta, unique_key, expires_at,
            depends_on, errors, progress, result, created_at, started_at, finished_at,
            worker_id)
        SELECT m.id, m.task, m.args, m.queue, m.priority, p_status, m.attempt,
               m.max_attempts, m.retry_policy, m.timeout, m.tags, m.meta, m.unique_key,
               m.expires_at, m.depends_on, m.errors, m.progress, r.result, m.created_at,
               m.started_at, p_now, m.worker_id
        FROM moved m
        LEFT JOIN unnest(p_ids, p_results) AS r(id, result) ON r.id = m.id
        RETURNING job_history.id, job_history.unique_key
    )
    SELECT array_agg(a.id), array_agg(a.id) FILTER (WHERE a.unique_key IS NOT NULL)
    INTO v_ids, v_keyed FROM archived a;
    PERFORM skiplock.jobs_left(v_ids, v_keyed, p_now);
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- bury_jobs (internal): move rows out of the hot table into dead_jobs (status `failed`);
-- the caller has locked them, checked their token and appended the error entry. Frees
-- their unique keys and settles the jobs waiting on them. Returns the buried ids.
CREATE FUNCTION skiplock.bury_jobs(p_ids bigint[], p_now timestamptz) RETURNS SETOF bigint
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
            depends_on, errors, progress, created_at, started_at, failed_at, worker_id)
        SELECT b.id, b.task, b.args, b.queue, b.priority, b.attempt, b.max_attempts,
               b.retry_policy, b.timeout, b.tags, b.meta, b.unique_key, b.expires_at,
               b.depends_on, b.errors, b.progress, b.created_at, b.started_at, p_now,
               b.worker_id
        FROM buried b
        RETURNING dead_jobs.id, dead_jobs.unique_key
    )
    SELECT array_agg(d.id), array_agg(d.id) FILTER (WHERE d.unique_key IS NOT NULL)
    INTO v_ids, v_keyed FROM dead d;
    PERFORM skiplock.jobs_left(v_ids, v_keyed, p_now);
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- resolve_dependents (internal): jobs p_ids have just finished, whatever the outcome:
-- settle the jobs waiting on them, and drop the dependencies p_ids themselves waited on
-- (a waiting job can be cancelled or expire). One cheap probe when nobody waits.
CREATE FUNCTION skiplock.resolve_dependents(p_ids bigint[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ids IS NULL OR NOT EXISTS (SELECT 1 FROM skiplock.job_dependencies) THEN
        RETURN;
    END IF;
    DELETE FROM skiplock.job_dependencies d WHERE d.job_id = ANY (p_ids);
    PERFORM skiplock.settle_waiting_jobs(
        ARRAY(SELECT DISTINCT d.job_id FROM skiplock.job_dependencies d
              WHERE d.depends_on = ANY (p_ids)),
        p_now);
END
$$;

-- settle_waiting_jobs: look again at waiting jobs p_ids. Dependencies that succeeded are
-- crossed off; a job with none left becomes queued (workers are woken). A job with a
-- dependency that failed, was cancelled, expired or no longer exists follows its
-- on_dependency_failure: 'fail' → dead letters (DependencyFailed), 'cancel' →
-- cancelled, 'run' → the dependency is crossed off. Jobs locked by someone else are
-- skipped (SKIP LOCKED; the sweep comes back to them). Safe to call at any time.
CREATE FUNCTION skiplock.settle_waiting_jobs(p_ids bigint[], p_now timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_job record;
    v_bad bigint;
    v_ready bigint[] := '{}';
    v_fail bigint[] := '{}';
    v_cancel bigint[] := '{}';
    v_queues text;
BEGIN
    FOR v_job IN
        SELECT j.id, j.on_dependency_failure FROM skiplock.jobs j
        WHERE j.id = ANY (p_ids) AND j.state = 'waiting'
        ORDER BY j.id
        FOR UPDATE SKIP LOCKED
    LOOP
        -- cross off what succeeded
        DELETE FROM skiplock.job_dependencies d
        WHERE d.job_id = v_job.id
          AND EXISTS (SELECT 1 FROM skiplock.job_history h
                      WHERE h.id = d.depends_on AND h.status = 'succeeded');
        SELECT d.depends_on INTO v_bad
        FROM skiplock.job_dependencies d
        WHERE d.job_id = v_job.id
          AND NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = d.depends_on)
        ORDER BY d.depends_on LIMIT 1;
        IF v_bad IS NOT NULL AND v_job.on_dependency_failure = 'run' THEN
            DELETE FROM skiplock.job_dependencies d
            WHERE d.job_id = v_job.id
              AND NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = d.depends_on);
            v_bad := NULL;
        END IF;
        IF v_bad IS NOT NULL THEN
            DELETE FROM skiplock.job_dependencies d WHERE d.job_id = v_job.id;
            UPDATE skiplock.jobs j
            SET errors = j.errors || jsonb_build_array(jsonb_build_object(
                    'attempt', j.attempt, 'at', v_now, 'type', 'DependencyFailed',
                    'error', format('dependency %s did not succeed (%s)', v_bad,
                                    coalesce((SELECT a.status FROM skiplock.all_jobs a
                                              WHERE a.id = v_bad), 'deleted'))))
            WHERE j.id = v_job.id;
            IF v_job.on_dependency_failure = 'cancel' THEN
                v_cancel := v_cancel || v_job.id;
            ELSE
                v_fail := v_fail || v_job.id;
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM skiplock.job_dependencies d WHERE d.job_id = v_job.id) THEN
            v_ready := v_ready || v_job.id;
        END IF;
    END LOOP;

    IF cardinality(v_ready) > 0 THEN
        WITH ready AS (
            UPDATE skiplock.jobs j SET state = 'queued', run_at = greatest(j.run_at, v_now)
            WHERE j.id = ANY (v_ready)
            RETURNING j.queue)
        SELECT string_agg(DISTINCT r.queue, ',') INTO v_queues FROM ready r;
        PERFORM pg_notify('skiplock_jobs', v_queues);
    END IF;
    IF cardinality(v_cancel) > 0 THEN
        PERFORM skiplock.archive_jobs(v_cancel, 'cancelled', NULL, v_now);
    END IF;
    IF cardinality(v_fail) > 0 THEN
        PERFORM skiplock.bury_jobs(v_fail, v_now);
    END IF;
END
$$;

-- sweep_waiting_jobs: the safety net for a dependency that finished while its dependent
-- was being enqueued (neither transaction saw the other). Settles up to p_limit waiting
-- jobs that still list a dependency which has left the hot table. Run by every worker's
-- maintenance; returns how many jobs it looked at.
CREATE FUNCTION skiplock.sweep_waiting_jobs(p_limit integer DEFAULT 100,
                                            p_now timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    v_ids := ARRAY(
        SELECT DISTINCT d.job_id FROM skiplock.job_dependencies d
        WHERE NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = d.depends_on)
        LIMIT p_limit);
    IF cardinality(v_ids) > 0 THEN
        PERFORM skiplock.settle_waiting_jobs(v_ids, p_now);
    END IF;
    RETURN cardinality(v_ids);
END
$$;

-- complete_jobs: record success for a batch of p_worker_id's jobs, p_results[i] being
-- the result of (p_ids[i], attempt p_attempts[i]). Only jobs still running under that
-- token are completed; a completion from a worker that lost the lease changes nothing,
-- and completing twice is a no-op. Returns the ids that were completed.
CREATE FUNCTION skiplock.complete_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_results jsonb[],
    p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
    v_results jsonb[];
BEGIN
    SELECT array_agg(owned.id), array_agg(owned.result) INTO v_ids, v_results
    FROM (SELECT j.id, u.result
          FROM unnest(p_ids, p_attempts, p_results) AS u(id, attempt, result)
          JOIN skiplock.jobs j ON j.id = u.id
          WHERE j.id = ANY (p_ids) AND j.attempt = u.attempt AND j.worker_id = p_worker_id
            AND j.state = 'running'
          FOR UPDATE OF j) owned;
    IF v_ids IS NOT NULL THEN
        RETURN QUERY SELECT skiplock.archive_jobs(v_ids, 'succeeded', v_results,
                                                  coalesce(p_now, now()));
    END IF;
END
$$;

-- fail_jobs: record a failed attempt for a batch of p_worker_id's jobs. p_errors[i] is
-- an object {"error": text, "traceback": text, ...}; "retry": false skips the remaining
-- attempts and "retry_in": seconds overrides the policy's delay. Per job, checked under
-- the same fencing token as complete_jobs:
--   cancel requested        → cancelled (job_history)
--   attempts left, retrying → queued again at now + retry delay (status `retrying`)
--   otherwise               → dead_jobs (status `failed`)
-- Returns (id, status) for the jobs it changed; stale tokens are ignored.
CREATE FUNCTION skiplock.fail_jobs(
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

-- release_jobs: hand running jobs back to the queue without counting the attempt (a
-- worker shutting down gives back what it could not finish). Fenced like complete_jobs.
-- A released job whose cancellation was requested ends cancelled instead. The released
-- jobs are ready at once and workers are woken. Returns the ids released or cancelled.
CREATE FUNCTION skiplock.release_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_ids bigint[];
    v_cancelled bigint[];
    v_queues text;
BEGIN
    SELECT array_agg(j.id) FILTER (WHERE j.cancel_requested_at IS NOT NULL)
    INTO v_cancelled
    FROM (SELECT j.id, j.cancel_requested_at
          FROM unnest(p_ids, p_attempts) AS u(id, attempt)
          JOIN skiplock.jobs j ON j.id = u.id
          WHERE j.id = ANY (p_ids) AND j.attempt = u.attempt AND j.worker_id = p_worker_id
            AND j.state = 'running'
          FOR UPDATE OF j) j;
    IF v_cancelled IS NOT NULL THEN
        PERFORM skiplock.archive_jobs(v_cancelled, 'cancelled', NULL, v_now);
    END IF;

    WITH released AS (
        UPDATE skiplock.jobs j
        SET state = 'queued', attempt = j.attempt - 1, run_at = v_now,
            worker_id = NULL, lease_expires_at = NULL
        FROM unnest(p_ids, p_attempts) AS u(id, attempt)
        WHERE j.id = ANY (p_ids) AND j.id = u.id AND j.attempt = u.attempt
          AND j.worker_id = p_worker_id AND j.state = 'running'
        RETURNING j.id, j.queue
    )
    SELECT array_agg(r.id), string_agg(DISTINCT r.queue, ',')
    INTO v_ids, v_queues FROM released r;
    IF v_queues IS NOT NULL THEN
        PERFORM pg_notify('skiplock_jobs', v_queues);
    END IF;
    RETURN QUERY SELECT x.id FROM unnest(coalesce(v_ids, '{}') || coalesce(v_cancelled, '{}')) AS x(id)
                 ORDER BY x.id;
END
$$;

-- rescue_expired_jobs: fail running jobs whose lease expired (their worker died or lost
-- the database) through fail_jobs, so the attempt counts: a job that kills its worker
-- every time ends in the dead letters. Safe to run from every worker at once: rows are
-- taken with SKIP LOCKED, and fail_jobs re-checks each token. Up to p_limit per call.
-- Returns (id, status) as fail_jobs does.
CREATE FUNCTION skiplock.rescue_expired_jobs(
    p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_owner record;
BEGIN
    FOR v_owner IN
        SELECT e.worker_id, array_agg(e.id) AS ids, array_agg(e.attempt) AS attempts
        FROM (SELECT j.id, j.worker_id, j.attempt FROM skiplock.jobs j
              WHERE j.state = 'running' AND j.lease_expires_at < v_now
              LIMIT p_limit FOR UPDATE SKIP LOCKED) e
        GROUP BY e.worker_id
    LOOP
        RETURN QUERY SELECT * FROM skiplock.fail_jobs(
            v_owner.worker_id, v_owner.ids, v_owner.attempts,
            array_fill(jsonb_build_object('error', 'lease expired: the worker stopped renewing it',
                                          'type', 'LeaseExpired'),
                       ARRAY[cardinality(v_owner.ids)]),
            v_now);
    END LOOP;
END
$$;

-- cancel_job: cancel one job. Not yet running (waiting, scheduled, queued, retrying) →
-- cancelled at once. Running → cancel_requested_at is set and its worker is told on
-- channel skiplock_cancel; the handler's cancellation signal fires and the job ends
-- `cancelled` (unless it finishes first). Returns the job's status after the call, or
-- NULL when no job has this id; a finished job is left as it is.
CREATE FUNCTION skiplock.cancel_job(p_id bigint, p_now timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_state skiplock.job_state;
BEGIN
    SELECT j.state INTO v_state FROM skiplock.jobs j WHERE j.id = p_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN (SELECT a.status FROM skiplock.all_jobs a WHERE a.id = p_id);
    END IF;
    IF v_state = 'running' THEN
        UPDATE skiplock.jobs j SET cancel_requested_at = coalesce(j.cancel_requested_at, p_now, now())
        WHERE j.id = p_id;
        PERFORM pg_notify('skiplock_cancel', p_id::text);
        RETURN 'running';
    END IF;
    PERFORM skiplock.archive_jobs(ARRAY[p_id], 'cancelled', NULL, coalesce(p_now, now()));
    RETURN 'cancelled';
END
$$;

-- retry_job: run a job again. A failed (dead) or finished job goes back to the hot table
-- (without its unique key: a retry is an explicit request to run it again)
-- with the same id, attempts reset and its error history kept; a job that is waiting to
-- run (scheduled, retrying, queued) is made ready now. Raises for a running job.
-- Returns the job's status after the call, or NULL when no job has this id.
CREATE FUNCTION skiplock.retry_job(p_id bigint, p_now timestamptz DEFAULT NULL)
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
                  d.timeout, d.tags, d.meta, d.errors, d.created_at
    ), revived_history AS (
        DELETE FROM skiplock.job_history h WHERE h.id = p_id
        RETURNING h.id, h.task, h.args, h.queue, h.priority, h.max_attempts, h.retry_policy,
                  h.timeout, h.tags, h.meta, h.errors, h.created_at
    )
    INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts, retry_policy,
                               timeout, tags, meta, errors, created_at, run_at)
    SELECT r.*, v_now FROM (SELECT * FROM revived UNION ALL SELECT * FROM revived_history) r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN 'queued';
END
$$;

-- set_job_progress: store a running job's progress (fraction 0..1 and a message),
-- fenced by its token. Returns false when the job is no longer this worker's.
CREATE FUNCTION skiplock.set_job_progress(
    p_worker_id uuid, p_id bigint, p_attempt integer, p_fraction float8, p_message text
) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_fraction IS NOT NULL AND NOT (p_fraction BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'progress fraction must be between 0 and 1, got %', p_fraction
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE skiplock.jobs j
    SET progress = jsonb_build_object('fraction', p_fraction, 'message', p_message, 'at', now())
    WHERE j.id = p_id AND j.attempt = p_attempt AND j.worker_id = p_worker_id
      AND j.state = 'running';
    RETURN FOUND;
END
$$;

-- register_worker / unregister_worker: the workers table lists live worker processes
-- (a new UUID per process start, never a reused name).
CREATE FUNCTION skiplock.register_worker(
    p_worker_id uuid, p_host text, p_pid integer, p_queues text[], p_concurrency integer,
    p_version text
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO skiplock.workers (id, host, pid, queues, concurrency, version)
    VALUES (p_worker_id, p_host, p_pid, p_queues, p_concurrency, p_version)
    ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
$$;

CREATE FUNCTION skiplock.unregister_worker(p_worker_id uuid) RETURNS void
LANGUAGE sql AS $$
    DELETE FROM skiplock.workers WHERE id = p_worker_id
$$;

-- prune_workers: forget workers not heard from in p_older_than (their jobs, if any, are
-- rescued by lease expiry, not here). Returns how many were removed.
CREATE FUNCTION skiplock.prune_workers(p_older_than interval DEFAULT interval '1 hour',
                                       p_now timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM skiplock.workers
        WHERE last_heartbeat_at < coalesce(p_now, now()) - p_older_than
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- expire_jobs: end, as `expired`, up to p_limit jobs waiting to start (queued, scheduled,
-- retrying, waiting) whose deadline (expires_at) has passed; claim_jobs already skips
-- them. Running jobs are left alone. Rows are taken with SKIP LOCKED: safe from every
-- worker at once. Returns the expired ids.
CREATE FUNCTION skiplock.expire_jobs(p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE sql AS $$
    SELECT skiplock.archive_jobs(ARRAY(
        SELECT j.id FROM skiplock.jobs j
        WHERE j.expires_at <= coalesce(p_now, now()) AND j.state <> 'running'
        ORDER BY j.expires_at
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED), 'expired', NULL, coalesce(p_now, now()))
$$;

-- prune_job_history: retention. Delete up to p_limit finished jobs (succeeded, cancelled,
-- expired) that finished more than p_older_than ago, oldest first. Rows are taken with
-- SKIP LOCKED, so every worker may prune at once without a leader and without blocking
-- each other; call again while it returns p_limit. Dead letters are kept until purged.
-- Returns how many were deleted.
CREATE FUNCTION skiplock.prune_job_history(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql AS $$
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
CREATE FUNCTION skiplock.prune_unique_keys(p_now timestamptz DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM skiplock.unique_keys k WHERE k.holds_until < coalesce(p_now, now())
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- pause_queue / resume_queue: a paused queue keeps its jobs but claim_jobs skips it;
-- running jobs finish. Returns false for a queue that has never been seen.
CREATE FUNCTION skiplock.pause_queue(p_queue text) RETURNS boolean
LANGUAGE sql AS $$
    WITH paused AS (UPDATE skiplock.queues SET paused = true WHERE name = p_queue RETURNING 1)
    SELECT EXISTS (SELECT FROM paused)
$$;

CREATE FUNCTION skiplock.resume_queue(p_queue text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE skiplock.queues SET paused = false WHERE name = p_queue;
    IF FOUND THEN
        PERFORM pg_notify('skiplock_jobs', p_queue);
    END IF;
    RETURN FOUND;
END
$$;


-- Recurring schedules. The cron expression is parsed by the workers (croniter); SQL
-- checks its shape and the time zone. next_run_at is NULL until a worker computes it.
CREATE TABLE skiplock.schedules (
    name         text PRIMARY KEY,
    cron         text NOT NULL,
    timezone     text NOT NULL DEFAULT 'UTC',
    task         skiplock.task_name NOT NULL,
    args         skiplock.job_args NOT NULL DEFAULT '{}',
    queue        skiplock.queue_name NOT NULL DEFAULT 'default',
    priority     smallint NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 20,
    enabled      boolean NOT NULL DEFAULT true,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    last_job_id  bigint,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_name_valid CHECK (name ~ '^[A-Za-z0-9_.:/-]{1,200}$'),
    CONSTRAINT cron_shape_valid CHECK (
        cron ~ '^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$'
        OR cron ~ '^[0-9A-Za-z*,/?#LW-]+( +[0-9A-Za-z*,/?#LW-]+){4}$'),
    CONSTRAINT schedule_priority_in_range CHECK (priority BETWEEN -100 AND 100),
    CONSTRAINT schedule_max_attempts_positive CHECK (max_attempts >= 1)
);
CREATE INDEX schedules_due_idx ON skiplock.schedules (next_run_at) WHERE enabled;

-- create_schedule: add a schedule, or with p_replace replace one of the same name (a
-- changed cron or time zone makes the workers compute next_run_at again). Raises for an
-- unknown time zone, a malformed cron expression, or an existing name without p_replace.
CREATE FUNCTION skiplock.create_schedule(
    p_name text, p_cron text, p_task text, p_args jsonb DEFAULT '{}',
    p_queue text DEFAULT 'default', p_priority integer DEFAULT 0,
    p_timezone text DEFAULT 'UTC', p_max_attempts integer DEFAULT 20,
    p_enabled boolean DEFAULT true, p_replace boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_timezone) THEN
        RAISE EXCEPTION 'unknown time zone %; use an IANA name such as Europe/Paris', p_timezone
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO skiplock.schedules AS s (name, cron, timezone, task, args, queue, priority,
                                         max_attempts, enabled)
    VALUES (p_name, trim(p_cron), p_timezone, p_task, coalesce(p_args, '{}'),
            coalesce(p_queue, 'default'), coalesce(p_priority, 0),
            coalesce(p_max_attempts, 20), coalesce(p_enabled, true))
    ON CONFLICT (name) DO UPDATE
        SET cron = excluded.cron, timezone = excluded.timezone, task = excluded.task,
            args = excluded.args, queue = excluded.queue, priority = excluded.priority,
            max_attempts = excluded.max_attempts, enabled = excluded.enabled,
            next_run_at = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                               THEN s.next_run_at END,
            last_error = NULL, updated_at = now()
        WHERE p_replace;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule % already exists', p_name USING ERRCODE = 'unique_violation';
    END IF;
END
$$;

-- enable_schedule / disable_schedule / delete_schedule: return false for an unknown name.
-- Enabling recomputes next_run_at from now, so a schedule off for a week does not fire
-- for the week it missed.
CREATE FUNCTION skiplock.enable_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.schedules SET enabled = true, next_run_at = NULL, updated_at = now()
        WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

CREATE FUNCTION skiplock.disable_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.schedules SET enabled = false, updated_at = now()
        WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

CREATE FUNCTION skiplock.delete_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM skiplock.schedules WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;

-- lock_due_schedules: the scheduler's first step, inside its transaction. Locks (SKIP
-- LOCKED, so schedulers on every worker share the work without a leader) the enabled
-- schedules that are due or have no next_run_at yet, and returns them with the database
-- time. The caller computes fire and next times and calls fire_schedule or
-- set_schedule_next_run for each before committing.
CREATE FUNCTION skiplock.lock_due_schedules(p_limit integer DEFAULT 100,
                                            p_now timestamptz DEFAULT NULL)
RETURNS TABLE (name text, cron text, timezone text, next_run_at timestamptz,
               db_now timestamptz)
LANGUAGE sql AS $$
    SELECT s.name, s.cron, s.timezone, s.next_run_at, coalesce(p_now, now())
    FROM skiplock.schedules s
    WHERE s.enabled AND (s.next_run_at IS NULL OR s.next_run_at <= coalesce(p_now, now()))
    ORDER BY s.next_run_at NULLS FIRST
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
$$;

-- fire_schedule: enqueue the schedule's job for fire time p_fire_at and move next_run_at
-- to p_next_run_at. The job's unique key is (schedule, fire time), held for a day, so a
-- fire time is enqueued once even if two schedulers raced past the row lock. Returns
-- the job id (the existing one if this fire time was already enqueued).
CREATE FUNCTION skiplock.fire_schedule(p_name text, p_fire_at timestamptz,
                                       p_next_run_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_schedule skiplock.schedules;
    v_job bigint;
BEGIN
    SELECT * INTO v_schedule FROM skiplock.schedules s WHERE s.name = p_name;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_job := skiplock.enqueue(
        v_schedule.task, v_schedule.args, queue => v_schedule.queue,
        priority => v_schedule.priority, max_attempts => v_schedule.max_attempts,
        meta => jsonb_build_object('schedule', p_name, 'fire_at', p_fire_at),
        unique_key => 'schedule:' || p_name || '@' || p_fire_at::text,
        unique_for => interval '1 day');
    UPDATE skiplock.schedules s
    SET next_run_at = p_next_run_at, last_run_at = p_fire_at, last_job_id = v_job,
        last_error = NULL
    WHERE s.name = p_name;
    RETURN v_job;
END
$$;

-- set_schedule_next_run: record the next fire time (or, with p_error, why none could be
-- computed: the schedule is then disabled until fixed). Returns false for an unknown name.
CREATE FUNCTION skiplock.set_schedule_next_run(p_name text, p_next_run_at timestamptz,
                                               p_error text DEFAULT NULL)
RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.schedules s
        SET next_run_at = p_next_run_at, last_error = p_error,
            enabled = s.enabled AND p_error IS NULL
        WHERE s.name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

-- Functions that take id arrays are planned per call. After five calls PostgreSQL may
-- switch a function's statements to a generic plan, which cannot see the array sizes
-- and joins a 500-id unnest in a nested loop: complete_jobs went from 10 ms to 90 ms
-- per 500 jobs. Planning each call costs a fraction of a millisecond.
ALTER FUNCTION skiplock.heartbeat_jobs(uuid, bigint[], integer[], interval, timestamptz)
    SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION skiplock.complete_jobs(uuid, bigint[], integer[], jsonb[], timestamptz)
    SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION skiplock.fail_jobs(uuid, bigint[], integer[], jsonb[], timestamptz)
    SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION skiplock.release_jobs(uuid, bigint[], integer[], timestamptz)
    SET plan_cache_mode = force_custom_plan;
ALTER FUNCTION skiplock.archive_jobs(bigint[], skiplock.finished_status, jsonb[], timestamptz)
    SET plan_cache_mode = force_custom_plan;


-- set_queue_limits: cap a queue across all workers: at most p_max_running jobs running
-- at once, and at most p_rate_limit jobs started per p_rate_period (fixed windows that
-- open at the first start after the previous one closed, so up to twice the limit can
-- start across a window boundary). NULL removes a limit. Creates the queue row if
-- needed. Enforced by claim_jobs under the queue's row lock.
CREATE FUNCTION skiplock.set_queue_limits(
    p_queue text, p_max_running integer DEFAULT NULL, p_rate_limit integer DEFAULT NULL,
    p_rate_period interval DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO skiplock.queues AS q (name, max_running, rate_limit, rate_period)
    VALUES (p_queue, p_max_running, p_rate_limit, p_rate_period)
    ON CONFLICT (name) DO UPDATE
        SET max_running = excluded.max_running, rate_limit = excluded.rate_limit,
            rate_period = excluded.rate_period, rate_window_start = NULL,
            rate_window_count = 0;
    PERFORM pg_notify('skiplock_jobs', p_queue);
END
$$;

-- Every job, wherever it lives, with its status in the words users see.
CREATE VIEW skiplock.all_jobs AS
SELECT id, task, args, queue, priority,
       CASE WHEN state = 'running' THEN 'running'
            WHEN state = 'waiting' THEN 'waiting'
            WHEN attempt > 0 THEN 'retrying'
            WHEN run_at > now() THEN 'scheduled'
            ELSE 'queued' END AS status,
       attempt, max_attempts, run_at, created_at, started_at,
       NULL::timestamptz AS finished_at, progress, NULL::jsonb AS result,
       errors -> -1 AS last_error, errors, tags, meta, retry_policy, timeout, worker_id,
       lease_expires_at, cancel_requested_at, unique_key, expires_at, depends_on
FROM skiplock.jobs
UNION ALL
SELECT id, task, args, queue, priority, status::text, attempt, max_attempts, NULL,
       created_at, started_at, finished_at, progress, result, errors -> -1, errors, tags,
       meta, retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on
FROM skiplock.job_history
UNION ALL
SELECT id, task, args, queue, priority, 'failed', attempt, max_attempts, NULL, created_at,
       started_at, failed_at, progress, NULL, errors -> -1, errors, tags, meta,
       retry_policy, timeout, worker_id, NULL, NULL, unique_key, expires_at, depends_on
FROM skiplock.dead_jobs;

-- The dead letters with their last error.
CREATE VIEW skiplock.dead_letters AS
SELECT id, task, queue, attempt, max_attempts, errors -> -1 ->> 'error' AS last_error,
       failed_at, args, errors, created_at
FROM skiplock.dead_jobs;

-- Per-queue counts by status. Pending statuses are counted in the (small) hot table;
-- finished ones are totals since install, kept by triggers.
CREATE VIEW skiplock.queue_stats AS
SELECT q.name AS queue, q.paused, q.max_running, q.rate_limit, q.rate_period,
       coalesce(h.waiting, 0) AS waiting, coalesce(h.scheduled, 0) AS scheduled,
       coalesce(h.queued, 0) AS queued, coalesce(h.running, 0) AS running,
       coalesce(h.retrying, 0) AS retrying,
       coalesce(t.succeeded, 0) AS succeeded, coalesce(t.failed, 0) AS failed,
       coalesce(t.cancelled, 0) AS cancelled, coalesce(t.expired, 0) AS expired
FROM skiplock.queues q
LEFT JOIN (
    SELECT queue,
           count(*) FILTER (WHERE state = 'waiting') AS waiting,
           count(*) FILTER (WHERE state = 'queued' AND attempt = 0 AND run_at > now()) AS scheduled,
           count(*) FILTER (WHERE state = 'queued' AND attempt = 0 AND run_at <= now()) AS queued,
           count(*) FILTER (WHERE state = 'running') AS running,
           count(*) FILTER (WHERE state = 'queued' AND attempt > 0) AS retrying
    FROM skiplock.jobs GROUP BY queue
) h ON h.queue = q.name
LEFT JOIN (
    SELECT queue,
           (sum(total) FILTER (WHERE status = 'succeeded'))::bigint AS succeeded,
           (sum(total) FILTER (WHERE status = 'failed'))::bigint AS failed,
           (sum(total) FILTER (WHERE status = 'cancelled'))::bigint AS cancelled,
           (sum(total) FILTER (WHERE status = 'expired'))::bigint AS expired
    FROM skiplock.queue_totals GROUP BY queue
) t ON t.queue = q.name;

-- Worker processes with how many jobs each is running and whether it looks alive.
CREATE VIEW skiplock.worker_stats AS
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.last_heartbeat_at,
       (SELECT count(*) FROM skiplock.jobs j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running_jobs,
       w.last_heartbeat_at > now() - interval '1 minute' AS alive
FROM skiplock.workers w;
