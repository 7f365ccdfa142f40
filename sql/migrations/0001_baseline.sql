-- skiplock 0001: the shape of the data — types, domains, tables, constraints, indexes.
--
-- Every function, trigger and view lives in sql/functions/, applied after the
-- migrations; read those files in order to learn every way a job moves.
--
-- Three tables hold every job, and a job lives in exactly one of them:
--   jobs         the hot table: waiting, queued (incl. scheduled and retrying) and running
--                jobs only, so the claim index stays small and in memory;
--   job_history  finished jobs: succeeded, cancelled, expired, with their result;
--   dead_jobs    the dead letters: jobs that failed their last attempt.

CREATE TYPE skiplock.job_state AS ENUM ('waiting', 'queued', 'running');
CREATE TYPE skiplock.finished_status AS ENUM ('succeeded', 'cancelled', 'expired');
-- How long a unique key keeps out other jobs with the same key: until the job starts
-- (queued), until it finishes (active), or until a period after it finishes (period).
CREATE TYPE skiplock.unique_scope AS ENUM ('queued', 'active', 'period');
-- What a waiting job does when a job it depends on fails, is cancelled or expires.
CREATE TYPE skiplock.dependency_policy AS ENUM ('fail', 'cancel', 'run');
-- What an API token may do.
CREATE TYPE skiplock.token_scope AS ENUM ('read', 'write', 'admin');

-- Input rules live on domains, not table CHECKs: a domain is checked when a value is
-- assigned, a table CHECK on every UPDATE of the row. Re-checking these on each claim
-- and heartbeat cost about 40% of the claim (measured: 200-row claim 6.5 ms → 3.5 ms).
--
-- The name rules are written without a bounded repetition: `[...]{1,200}` compiles to
-- a 200-state regex that took ~30 us per checked value, most of the cost of inserting
-- a job (1,000-row insert: 36 ms -> 6 ms).
CREATE DOMAIN skiplock.task_name AS text
    CONSTRAINT task_name_valid CHECK (VALUE ~ '^[A-Za-z0-9_.:/-]+$' AND char_length(VALUE) <= 200);
CREATE DOMAIN skiplock.queue_name AS text
    CONSTRAINT queue_name_valid CHECK (VALUE ~ '^[A-Za-z0-9_.:-]+$' AND char_length(VALUE) <= 64);
-- Job args and meta nest at most 200 levels, whoever inserts them. PostgreSQL accepts a
-- few thousand levels of nesting, but Python's json (what every worker decodes claimed
-- args with) stops at ~1,000: such a row made every claim that picked it fail, for the
-- whole batch. A document under 800 bytes cannot nest 200 levels, so the walk runs only
-- for bigger ones (no measurable cost on a 10,000-job enqueue_many). Integers of more
-- than 4,300 digits (Python's limit) are stored: numeric storage is compact whatever
-- the magnitude, so there is no cheap gate, and walking every document cost ~25% of
-- enqueue_many's time; Python and HTTP producers refuse them.
CREATE DOMAIN skiplock.job_args AS jsonb
    CONSTRAINT args_is_object CHECK (jsonb_typeof(VALUE) = 'object')
    CONSTRAINT args_nest_at_most_200_levels
        CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'));
CREATE DOMAIN skiplock.job_meta AS jsonb
    CONSTRAINT meta_is_object CHECK (jsonb_typeof(VALUE) = 'object')
    CONSTRAINT meta_nest_at_most_200_levels
        CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'));
-- A retry policy is a small JSON object so that SQL callers can write one inline:
--   {"kind": "exponential" | "linear" | "fixed",   default exponential
--    "base": seconds,                              default 1
--    "max_delay": seconds,                         default 3600
--    "jitter": 0..1}                               default 0.1, fraction taken off at random
-- No key but these four (removing them leaves an empty object).
CREATE DOMAIN skiplock.retry_policy AS jsonb
    CONSTRAINT retry_policy_valid CHECK (VALUE IS NULL OR (
        jsonb_typeof(VALUE) = 'object'
        AND VALUE - ARRAY['kind', 'base', 'max_delay', 'jitter'] = '{}'::jsonb
        AND coalesce(VALUE->>'kind', 'exponential') IN ('exponential', 'linear', 'fixed')
        AND coalesce(jsonb_typeof(VALUE->'base'), 'number') = 'number'
        AND coalesce(jsonb_typeof(VALUE->'max_delay'), 'number') = 'number'
        AND coalesce(jsonb_typeof(VALUE->'jitter'), 'number') = 'number'
        AND coalesce((VALUE->>'base')::float8, 1) >= 0
        AND coalesce((VALUE->>'max_delay')::float8, 3600) >= 0
        AND coalesce((VALUE->>'jitter')::float8, 0.1) BETWEEN 0 AND 1));
-- A job's result webhook: when the job reaches a final state (succeeded, failed into the
-- dead letters, cancelled, expired) a delivery job of the built-in task
-- `skiplock.webhook` is enqueued in the same transaction, in the finished job's queue;
-- the worker serving that queue POSTs the outcome, signed, and retries with backoff
-- like any job.
CREATE DOMAIN skiplock.callback_url AS text
    CONSTRAINT callback_url_http CHECK (
        VALUE ~* '^https?://[^/?#[:space:][:cntrl:]]+([/?#][^[:space:][:cntrl:]]*)?$')
    CONSTRAINT callback_url_length CHECK (octet_length(VALUE) <= 2048);

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
    -- Defaults for the queue's jobs that set none of their own (a job's NULL is "not
    -- set"; here NULL: none). They are resolved where they are used, so a change applies
    -- to the jobs already waiting: fail_jobs reads job, then queue, then the built-in
    -- policy; claim_jobs returns the job's timeout, else the queue's, else none.
    retry_policy      skiplock.retry_policy,
    timeout           interval,
    CONSTRAINT max_running_positive CHECK (max_running IS NULL OR max_running >= 1),
    CONSTRAINT rate_limit_complete CHECK (
        (rate_limit IS NULL) = (rate_period IS NULL)
        AND (rate_limit IS NULL OR (rate_limit >= 1 AND rate_period > interval '0'))),
    CONSTRAINT queue_timeout_positive CHECK (timeout IS NULL OR timeout > interval '0')
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
    -- where the outcome is POSTed when the job reaches a final state (NULL: nowhere)
    callback_url        skiplock.callback_url,
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
-- expiry is deliberately not indexed so that a heartbeat can be a HOT update. The id
-- is in the key so that complete/fail/release/heartbeat probe exactly their ids: with
-- (worker_id) alone they walked the entries of every job that worker had finished
-- since the oldest open snapshot (an old snapshot keeps vacuum from removing them).
CREATE INDEX jobs_running_idx ON skiplock.jobs (worker_id, id) WHERE state = 'running';
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
    worker_id    uuid,
    callback_url text
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
    worker_id    uuid,
    callback_url text
);

CREATE INDEX dead_jobs_failed_at_idx ON skiplock.dead_jobs (failed_at);
-- Dead letters are listed and redriven per queue, newest first; without this index a
-- filtered page walks the whole table backwards. dead_jobs is written once per dead
-- job, so the extra index costs nothing on the hot path.
CREATE INDEX dead_jobs_queue_idx ON skiplock.dead_jobs (queue, id);

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
-- Keys held "while queued" are found by this index when a claim starts their jobs; the
-- claim first asks whether any exist at all, which is free when none do (the usual case).
CREATE INDEX unique_keys_queued_idx ON skiplock.unique_keys (job_id) WHERE scope = 'queued';

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
    last_heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- Handler threads still running after their job timed out or was cancelled, as of
    -- the latest heartbeat. Python cannot stop a sync handler's thread, and it holds one
    -- of the worker's slots; operators see such a worker as unhealthy in the workers
    -- view, the API, the CLI and /metrics, not only in its log.
    stuck_jobs        integer NOT NULL DEFAULT 0,
    -- The background loops (heartbeat, completer, maintenance, scheduler, listener,
    -- fetch) that have failed for longer than a lease; the worker claims nothing until
    -- they recover. A worker whose heartbeats stop altogether is unhealthy once its
    -- last heartbeat is older than the lease it renews with.
    stalled_loops     text[] NOT NULL DEFAULT '{}',
    -- the lease of its latest heartbeat; NULL until the first one
    lease             interval,
    -- Whether the worker can sign webhook deliveries: one without a webhook secret sends
    -- a job's callback_url delivery straight to the dead letters, so the API asks before
    -- it accepts a callback_url. NULL: it did not say (a worker of an older version, or
    -- one registered from another language), which is not taken as "no".
    signs_webhooks    boolean
);

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

-- ---- API authentication and the audit log ---------------------------------------------
--
-- An API token is `sk_<random>`; only its sha256 (hex) is stored, so a copy of this
-- table lets nobody in. The secret is shown once, by whoever created it. JWTs are
-- verified by the API alone (nothing stored). Every mutating API call leaves one row in
-- audit_log: who, what, when, with which answer.
CREATE TABLE skiplock.api_tokens (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL,
    scope         skiplock.token_scope NOT NULL,
    -- A glob over queue names (`*` any run, `?` one character), e.g. `emails*`;
    -- NULL: every queue. Same alphabet as queue names, plus the two wildcards.
    queue_pattern text,
    token_hash    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    CONSTRAINT name_is_valid CHECK (name ~ '^[A-Za-z0-9_.:@-]{1,100}$'),
    CONSTRAINT queue_pattern_is_valid CHECK (queue_pattern ~ '^[A-Za-z0-9_.:*?-]{1,64}$'),
    CONSTRAINT token_hash_is_sha256 CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    CONSTRAINT name_is_unique UNIQUE (name),
    CONSTRAINT token_hash_is_unique UNIQUE (token_hash)
);

CREATE TABLE skiplock.audit_log (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    -- The token's name, or `jwt:<sub>` for a JWT.
    actor  text NOT NULL,
    -- Method and path, e.g. `POST /api/v1/jobs/5/cancel`.
    action text NOT NULL,
    -- What it acted on when the route names it (a job id, a queue), else NULL.
    target text,
    status integer NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

-- `skiplock audit` and GET /api/v1/audit read newest first; retention deletes by age.
CREATE INDEX audit_log_at_idx ON skiplock.audit_log (at);

-- ---- workflows ---------------------------------------------------------------------------
--
-- A workflow is a DAG of jobs enqueued in one call and followed as one unit: a row in
-- `workflows` and one row per step in `workflow_steps`, each step being an ordinary job
-- whose dependencies are its parent steps (job_dependencies, settle_waiting_jobs,
-- on_dependency_failure). Nothing is added to the jobs table or the claim: a job that
-- is not a workflow step pays nothing.
--
-- Results are passed at dependency resolution: when a step that asks for its parents'
-- results becomes ready, settle_waiting_jobs writes them into its args, in the same
-- transaction that queues it. The claim then hands the handler its args as
-- always; no lookup happens on the claim path.
CREATE TABLE skiplock.workflows (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text,
    meta       jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT workflow_name_valid CHECK (name ~ '^[A-Za-z0-9_.:/-]{1,200}$'),
    CONSTRAINT workflow_meta_is_object CHECK (jsonb_typeof(meta) = 'object')
);

CREATE TABLE skiplock.workflow_steps (
    workflow_id bigint NOT NULL REFERENCES skiplock.workflows (id) ON DELETE CASCADE,
    name        text NOT NULL,
    -- declaration order, for listing
    position    integer NOT NULL,
    job_id      bigint NOT NULL,
    -- the parent steps, by name, in the order their results are passed
    after       text[] NOT NULL DEFAULT '{}',
    -- the argument that receives the one parent's result (a chain link) ...
    result_arg  text,
    -- ... or the list of all parents' results, in `after` order (a group's callback)
    results_arg text,
    -- The step's on_dependency_failure. Its job keeps it only while the job is in the
    -- hot table (job_history and dead_jobs do not), and retry_workflow needs it after;
    -- NULL counts as the default, 'fail'.
    on_dependency_failure skiplock.dependency_policy,
    PRIMARY KEY (workflow_id, name),
    CONSTRAINT step_name_valid CHECK (name ~ '^[A-Za-z0-9_.:/-]{1,100}$'),
    CONSTRAINT one_result_arg CHECK (result_arg IS NULL OR results_arg IS NULL)
);

-- settle_waiting_jobs looks steps up by job id when a waiting job becomes ready.
CREATE UNIQUE INDEX workflow_steps_job_idx ON skiplock.workflow_steps (job_id);

-- ---- task registry and job counters -----------------------------------------------------
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
