-- skiplock 0010: queue defaults. A queue may carry a default retry policy and a default
-- timeout (NULL: none) for its jobs that set none of their own (a job's NULL is "not
-- set"). They are resolved where they are used, so a change applies to the jobs already
-- waiting: fail_jobs reads job, then queue, then the built-in policy; claim_jobs returns
-- the job's timeout, else the queue's, else none.

ALTER TABLE skiplock.queues
    ADD COLUMN retry_policy skiplock.retry_policy,
    ADD COLUMN timeout interval,
    ADD CONSTRAINT queue_timeout_positive CHECK (timeout IS NULL OR timeout > interval '0');

-- set_queue_defaults: a queue's default retry policy and timeout, for its jobs that set
-- none. NULL (or left out) clears one. Creates the queue row if needed.
CREATE FUNCTION skiplock.set_queue_defaults(
    queue text, retry_policy jsonb DEFAULT NULL, timeout interval DEFAULT NULL
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO skiplock.queues (name, retry_policy, timeout)
    VALUES (set_queue_defaults.queue, set_queue_defaults.retry_policy,
            set_queue_defaults.timeout)
    ON CONFLICT (name) DO UPDATE
        SET retry_policy = excluded.retry_policy, timeout = excluded.timeout
$$;

-- Queue stats as in 0001, plus the defaults (new columns go last in a replaced view).
CREATE OR REPLACE VIEW skiplock.queue_stats AS
SELECT q.name AS queue, q.paused, q.max_running, q.rate_limit, q.rate_period,
       coalesce(h.waiting, 0) AS waiting, coalesce(h.scheduled, 0) AS scheduled,
       coalesce(h.queued, 0) AS queued, coalesce(h.running, 0) AS running,
       coalesce(h.retrying, 0) AS retrying,
       coalesce(t.succeeded, 0) AS succeeded, coalesce(t.failed, 0) AS failed,
       coalesce(t.cancelled, 0) AS cancelled, coalesce(t.expired, 0) AS expired,
       q.retry_policy, q.timeout
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

-- claim_jobs as in 0008; the returned timeout falls back to the queue's. The queue rows
-- are read once either way (0008 asked them whether any has limits).
CREATE OR REPLACE FUNCTION skiplock.claim_jobs(
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
    v_shared text[];
    v_shares integer[];
    v_started integer;
    v_has_limits boolean;
    v_timeout_queues text[];
    v_timeouts interval[];
BEGIN
    -- Queues with limits: lock their rows (claimers of a limited queue take turns) and
    -- work out how many jobs each may start now. Unlimited queues skip all of this.
    -- One read of the queue rows gives both: whether any has limits, and the default
    -- timeouts of those that have one (for jobs without their own).
    SELECT bool_or(lq.max_running IS NOT NULL OR lq.rate_limit IS NOT NULL),
           array_agg(lq.name::text) FILTER (WHERE lq.timeout IS NOT NULL),
           array_agg(lq.timeout) FILTER (WHERE lq.timeout IS NOT NULL)
    INTO v_has_limits, v_timeout_queues, v_timeouts
    FROM skiplock.queues lq WHERE lq.name = ANY (p_queues);
    IF v_has_limits THEN
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

    -- Over several queues, first work out (without locking) how many of the best p_limit
    -- jobs each queue holds, and lock only that many per queue below. Locking p_limit
    -- per queue and claiming p_limit in all held the surplus rows until commit: a
    -- concurrent claimer skipped them and started lower-priority jobs of the same queue
    -- first (tests/faults, scenario 9). One queue needs no such pass.
    IF cardinality(p_queues) > 1 THEN
        SELECT array_agg(s.queue), array_agg(s.jobs) INTO v_shared, v_shares
        FROM (SELECT best.queue, count(*)::integer AS jobs
              FROM (SELECT c.queue
                    FROM unnest(p_queues) AS q(name)
                    LEFT JOIN unnest(v_limited, v_budgets) AS budget(name, jobs)
                           ON budget.name = q.name
                    CROSS JOIN LATERAL (
                        SELECT c.queue, c.priority, c.run_at, c.id
                        FROM skiplock.jobs c
                        WHERE c.queue = q.name AND c.state = 'queued' AND c.run_at <= v_now
                          AND (c.expires_at IS NULL OR c.expires_at > v_now)
                        ORDER BY c.priority DESC, c.run_at, c.id
                        LIMIT least(p_limit, coalesce(budget.jobs, p_limit))
                    ) c
                    WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq
                                      WHERE pq.name = q.name AND pq.paused)
                    ORDER BY c.priority DESC, c.run_at, c.id
                    LIMIT p_limit) best
              GROUP BY best.queue) s;
    END IF;

    IF v_limited IS NOT NULL THEN
        -- As 0001 claimed every queue: the started jobs also count against the rate
        -- window of their queue (rows locked above) and free their "while queued" keys.
        RETURN QUERY
        WITH claimed AS (
        UPDATE skiplock.jobs j
        SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker_id,
            started_at = v_now, lease_expires_at = v_now + p_lease, progress = NULL
        WHERE j.id = ANY (ARRAY(
            SELECT picked.id
            FROM unnest(p_queues) AS q(name)
            LEFT JOIN unnest(v_limited, v_budgets) AS budget(name, jobs) ON budget.name = q.name
            LEFT JOIN unnest(v_shared, v_shares) AS share(name, jobs) ON share.name = q.name
            CROSS JOIN LATERAL (
                SELECT c.id, c.priority, c.run_at
                FROM skiplock.jobs c
                WHERE c.queue = q.name AND c.state = 'queued' AND c.run_at <= v_now
                  AND (c.expires_at IS NULL OR c.expires_at > v_now)
                ORDER BY c.priority DESC, c.run_at, c.id
                LIMIT least(p_limit, coalesce(budget.jobs, p_limit),
                            CASE WHEN v_shared IS NULL THEN p_limit ELSE coalesce(share.jobs, 0) END)
                FOR UPDATE SKIP LOCKED
            ) picked
            WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq WHERE pq.name = q.name AND pq.paused)
            ORDER BY picked.priority DESC, picked.run_at, picked.id
            LIMIT p_limit))
        RETURNING j.*
        ), started AS (
            DELETE FROM skiplock.unique_keys k
            WHERE k.job_id = ANY (ARRAY(SELECT c.id FROM claimed c WHERE c.unique_key IS NOT NULL))
              AND k.scope = 'queued'
        ), counted AS (
            UPDATE skiplock.queues lq
            SET rate_window_count = lq.rate_window_count + n.started
            FROM (SELECT c.queue, count(*)::integer AS started FROM claimed c
                  WHERE c.queue = ANY (v_limited) GROUP BY c.queue) n
            WHERE lq.name = n.queue AND lq.rate_limit IS NOT NULL
        )
        SELECT c.id, c.task::text, c.args::jsonb, c.queue::text, c.priority, c.attempt,
               c.max_attempts,
               coalesce(c.timeout, v_timeouts[array_position(v_timeout_queues, c.queue::text)]),
               c.created_at, c.tags, c.meta::jsonb
        FROM claimed c;
        RETURN;
    END IF;

    -- No limits: one UPDATE whose RETURNING is the result. The pick walks jobs_claim_idx
    -- per queue (LATERAL) and the UPDATE then probes the primary key for exactly the
    -- picked ids (= ANY(ARRAY(...)) keeps the planner from turning the pick into a
    -- semi-join over the whole table).
    RETURN QUERY
    UPDATE skiplock.jobs j
    SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker_id,
        started_at = v_now, lease_expires_at = v_now + p_lease, progress = NULL
    WHERE j.id = ANY (ARRAY(
        SELECT picked.id
        FROM unnest(p_queues) AS q(name)
        LEFT JOIN unnest(v_shared, v_shares) AS share(name, jobs) ON share.name = q.name
        CROSS JOIN LATERAL (
            SELECT c.id, c.priority, c.run_at
            FROM skiplock.jobs c
            WHERE c.queue = q.name AND c.state = 'queued' AND c.run_at <= v_now
              AND (c.expires_at IS NULL OR c.expires_at > v_now)
            ORDER BY c.priority DESC, c.run_at, c.id
            LIMIT CASE WHEN v_shared IS NULL THEN p_limit ELSE coalesce(share.jobs, 0) END
            FOR UPDATE SKIP LOCKED
        ) picked
        WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq WHERE pq.name = q.name AND pq.paused)
        ORDER BY picked.priority DESC, picked.run_at, picked.id
        LIMIT p_limit))
    RETURNING j.id, j.task::text, j.args::jsonb, j.queue::text, j.priority, j.attempt,
              j.max_attempts,
              coalesce(j.timeout, v_timeouts[array_position(v_timeout_queues, j.queue::text)]),
              j.created_at, j.tags, j.meta::jsonb;
    GET DIAGNOSTICS v_started = ROW_COUNT;
    -- Keys held "while queued" are free once the job starts. The jobs this call started
    -- are this worker's running jobs with started_at = v_now (an earlier call at the
    -- same v_now is matched again: deleting its keys twice is a no-op).
    IF v_started > 0 AND EXISTS (SELECT 1 FROM skiplock.unique_keys k WHERE k.scope = 'queued') THEN
        DELETE FROM skiplock.unique_keys k
        WHERE k.scope = 'queued'
          AND k.job_id IN (SELECT r.id FROM skiplock.jobs r
                           WHERE r.worker_id = p_worker_id AND r.state = 'running'
                             AND r.started_at = v_now);
    END IF;
END
$$;

-- fail_jobs as in 0005; a job without a retry policy retries by its queue's.
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
                            ELSE skiplock.retry_delay(
                                coalesce(j.retry_policy,
                                         (SELECT q.retry_policy FROM skiplock.queues q
                                          WHERE q.name = j.queue)),
                                j.attempt) END AS retry_at
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
