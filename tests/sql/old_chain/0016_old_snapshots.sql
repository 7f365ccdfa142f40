-- An old snapshot no longer stalls the worker.
--
-- An old snapshot (an idle REPEATABLE READ transaction, a long report, a standby with
-- hot_standby_feedback) keeps every row version deleted or updated since it began: vacuum
-- may not remove them, and an index scan may not mark their entries dead. Two index
-- scans of the worker's hot path walked all of those entries on every call, each one
-- looked up in the table: with a transaction held for 5 minutes at ~7,000 jobs/s the
-- worker fell to ~1,100 jobs/s and 1.6 M jobs piled up.
--
-- 1. The claim walked jobs_claim_idx from its front, where every job claimed since
--    sits. claim_jobs now takes p_run_after: only jobs with run_at >= p_run_after are
--    claimed. A worker whose claims turn slow passes the run_at of the oldest job its
--    last full claim started; with the run_at bound the index scan seeks past the dead
--    entries (PostgreSQL 18 skips to each priority; older versions check the bound in
--    the index, without visiting the table). Full claims every few seconds still take
--    whatever the bound left behind. It also returns run_at, for the worker to pick its
--    bound.
-- 2. complete/fail/release/heartbeat found a worker's running jobs through
--    jobs_running_idx (worker_id): the entries of every job that worker has finished
--    since. Indexed by (worker_id, id), the same statements probe exactly their ids.
-- 3. finish_jobs (complete_jobs' move to history) checks its jobs' tokens one id at a
--    time before the DELETE, so its plan no longer hangs on the table's statistics.

-- The rebuild reads the hot table once (queued and running jobs only; seconds for a
-- million of them), and inserts into it wait until it is done.
DROP INDEX skiplock.jobs_running_idx;
CREATE INDEX jobs_running_idx ON skiplock.jobs (worker_id, id) WHERE state = 'running';

-- New parameter and result column: a new signature; drop the old one so calls stay
-- unambiguous.
DROP FUNCTION skiplock.claim_jobs(uuid, text[], integer, interval, timestamptz);

-- claim_jobs as in 0010, with p_run_after (NULL: no bound) and run_at in the result.
CREATE FUNCTION skiplock.claim_jobs(
    p_worker_id uuid, p_queues text[], p_limit integer,
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL,
    p_run_after timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, task text, args jsonb, queue text, priority smallint,
                 attempt integer, max_attempts integer, timeout interval,
                 created_at timestamptz, tags text[], meta jsonb, run_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_after timestamptz := coalesce(p_run_after, '-infinity');
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
                        WHERE c.queue = q.name AND c.state = 'queued'
                          AND c.run_at BETWEEN v_after AND v_now
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
                WHERE c.queue = q.name AND c.state = 'queued'
                  AND c.run_at BETWEEN v_after AND v_now
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
               c.created_at, c.tags, c.meta::jsonb, c.run_at
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
            WHERE c.queue = q.name AND c.state = 'queued'
              AND c.run_at BETWEEN v_after AND v_now
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
              j.created_at, j.tags, j.meta::jsonb, j.run_at;
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

-- finish_jobs as in 0012, with the fencing check in a LATERAL probe per job.
-- finish_jobs (internal): the one move of jobs out of the hot table into job_history
-- with p_status. With p_worker_id, only the jobs still running under their token
-- (p_worker_id, p_attempts[i]) move: each token is checked by its own probe, and the
-- DELETE re-checks owner and state as it takes the row locks. Without it (NULL), the
-- caller has locked and checked the rows.
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
    -- The token check, one job at a time: LATERAL keeps the ids outer, so each is one
    -- index probe whatever the table's statistics say, and the DELETE takes exactly the
    -- ids found. The DELETE joined the unnest itself before: on a fresh table whose
    -- statistics held no row of this worker it estimated one running job, put the jobs
    -- outer and rescanned the unnest for each (500 jobs: 250,000 comparisons, ~140 ms);
    -- on a table that looks small it hashed a full scan, which under an old snapshot
    -- walks every dead row version. The DELETE re-checks owner and state on the row it
    -- locks: a row changed since the probe is taken only if still running under this
    -- worker, and its attempt cannot have changed without a claim of a queued row.
    WITH owned AS MATERIALIZED (
        SELECT t.id, u.result
        FROM unnest(p_ids, p_attempts, p_results) AS u(id, attempt, result)
        CROSS JOIN LATERAL (
            SELECT j.id FROM skiplock.jobs j
            WHERE j.id = u.id
              AND (p_worker_id IS NULL
                   OR (j.attempt = u.attempt AND j.worker_id = p_worker_id
                       AND j.state = 'running'))
            LIMIT 1  -- ids are unique; the LIMIT also keeps this a probe per id
        ) t
    ), moved AS (
        DELETE FROM skiplock.jobs j
        WHERE j.id = ANY (ARRAY(SELECT o.id FROM owned o))
          AND (p_worker_id IS NULL OR (j.worker_id = p_worker_id AND j.state = 'running'))
        RETURNING j.*
    ), archived AS (
        INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,
            max_attempts, retry_policy, timeout, tags, meta, unique_key, expires_at,
            depends_on, errors, progress, result, created_at, started_at, finished_at,
            worker_id, callback_url)
        SELECT m.id, m.task, m.args, m.queue, m.priority, p_status, m.attempt,
               m.max_attempts, m.retry_policy, m.timeout, m.tags, m.meta, m.unique_key,
               m.expires_at, m.depends_on, m.errors, m.progress, o.result, m.created_at,
               m.started_at, p_now, m.worker_id, m.callback_url
        FROM moved m JOIN (SELECT DISTINCT ON (o.id) o.id, o.result FROM owned o) o
             ON o.id = m.id
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
