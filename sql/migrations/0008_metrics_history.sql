-- Metrics history: what the jobs did, per minute and per hour, by queue and task, and
-- how deep each queue was, sampled once a minute. Read by window, so a chart never
-- counts the job tables.
--
-- The job counters' rows now carry the minute they were counted in (NULL: totals
-- folded by compact_job_counts, which moves the minute's rows into the history as it
-- folds them): the finishing path writes no more than it did. Rows that predate this
-- migration are totals.
ALTER TABLE skiplock.job_counts ADD COLUMN minute timestamptz;
ALTER TABLE skiplock.job_counts ALTER COLUMN minute SET DEFAULT date_trunc('minute', now());

-- job_metrics_minutes is append-only for its writers (the reason job_counts is: an
-- upsert would hold a shared row's lock until the finishing transaction commits). The
-- fold (fold_metrics, once a minute) replaces the rows it has not seen yet (folded =
-- false) by one folded row per (minute, queue, task), and adds them to the hour. A
-- histogram is an array of per-bucket counts: element i counts the samples below
-- bound i (and at or above bound i-1) of its bounds function, the last one those past
-- the last bound.
CREATE TABLE skiplock.job_metrics_minutes (
    minute       timestamptz NOT NULL,
    queue        text NOT NULL,
    task         text NOT NULL,
    folded       boolean NOT NULL DEFAULT false,
    succeeded    bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    retried      bigint NOT NULL DEFAULT 0,
    cancelled    bigint NOT NULL DEFAULT 0,
    expired      bigint NOT NULL DEFAULT 0,
    -- the last attempt's run time of succeeded and failed jobs (job_duration_bounds)
    run_buckets  bigint[],
    run_seconds  float8 NOT NULL DEFAULT 0,
    -- how long a ready job waited to start (job_wait_bounds)
    wait_buckets bigint[],
    wait_seconds float8 NOT NULL DEFAULT 0
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000);

-- One folded row per key and minute: the fold adds into it; reads and pruning walk it
-- by minute.
CREATE UNIQUE INDEX job_metrics_minutes_key_idx
    ON skiplock.job_metrics_minutes (minute, queue, task) WHERE folded;
-- The rows written since the last fold: few, whatever the history holds.
CREATE INDEX job_metrics_minutes_unfolded_idx
    ON skiplock.job_metrics_minutes (minute) WHERE NOT folded;

CREATE TABLE skiplock.job_metrics_hours (
    hour         timestamptz NOT NULL,
    queue        text NOT NULL,
    task         text NOT NULL,
    succeeded    bigint NOT NULL DEFAULT 0,
    failed       bigint NOT NULL DEFAULT 0,
    retried      bigint NOT NULL DEFAULT 0,
    cancelled    bigint NOT NULL DEFAULT 0,
    expired      bigint NOT NULL DEFAULT 0,
    run_buckets  bigint[],
    run_seconds  float8 NOT NULL DEFAULT 0,
    wait_buckets bigint[],
    wait_seconds float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, queue, task)
);

-- Ready jobs per queue, sampled once a minute by one process (sample_queue_depth).
-- ready_estimated: the count stopped at its cap and `ready` is the planner's estimate.
-- oldest_ready_seconds: how long the oldest ready job has been due (0: none ready).
CREATE TABLE skiplock.queue_depth_minutes (
    minute               timestamptz NOT NULL,
    queue                text NOT NULL,
    ready                bigint NOT NULL,
    ready_estimated      boolean NOT NULL DEFAULT false,
    oldest_ready_seconds float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, queue)
);

-- The hour's peaks: the most ready jobs and the oldest ready job seen by its samples.
CREATE TABLE skiplock.queue_depth_hours (
    hour                 timestamptz NOT NULL,
    queue                text NOT NULL,
    ready                bigint NOT NULL,
    ready_estimated      boolean NOT NULL DEFAULT false,
    oldest_ready_seconds float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, queue)
);
