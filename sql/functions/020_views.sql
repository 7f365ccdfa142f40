-- Inspection views: every job with its status in the words users see, the dead
-- letters, per-queue stats and the workers. They read only tables, and functions
-- further on read all_jobs, so they come first. CREATE OR REPLACE VIEW can only add
-- columns at the end: a new column goes last, and none is removed or renamed here.

-- all_jobs: every job, wherever it lives (jobs, job_history, dead_jobs), with its
-- status in the words users see. Reads only. on_dependency_failure is kept only in the
-- hot table: a finished job waits on nothing, and shows NULL.
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

-- queue_stats: per-queue counts by status, with the queue's settings: limits,
-- defaults, and its order among queues (priority, weight). Pending statuses are counted
-- in the (small) hot table; finished ones are totals since install, kept by triggers.
CREATE OR REPLACE VIEW skiplock.queue_stats AS
SELECT q.name AS queue, q.paused, q.max_running, q.rate_limit, q.rate_period,
       coalesce(h.waiting, 0) AS waiting, coalesce(h.scheduled, 0) AS scheduled,
       coalesce(h.queued, 0) AS queued, coalesce(h.running, 0) AS running,
       coalesce(h.retrying, 0) AS retrying,
       coalesce(t.succeeded, 0) AS succeeded, coalesce(t.failed, 0) AS failed,
       coalesce(t.cancelled, 0) AS cancelled, coalesce(t.expired, 0) AS expired,
       q.retry_policy, q.timeout, q.priority, q.weight, q.max_attempts
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
