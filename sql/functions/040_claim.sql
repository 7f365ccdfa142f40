-- Claim: a worker takes ready jobs under a lease and keeps it alive.
--
-- Functions that take id arrays are planned per call (SET plan_cache_mode =
-- force_custom_plan). After five calls PostgreSQL may switch a function's statements to
-- a generic plan, which cannot see the array sizes and joins a big unnest in a nested
-- loop, many times slower than a plan made for the call; planning each call costs far
-- less.

-- claim_jobs: take up to p_limit ready jobs from p_queues for worker p_worker_id. Locks
-- with FOR UPDATE SKIP LOCKED, so concurrent claimers never block each other and never
-- get the same job; paused queues are skipped. Each claimed job becomes running, its
-- attempt is incremented and it gets a lease until now + p_lease. (worker_id, attempt)
-- is the fencing token every later call checks. Returns the claimed jobs, with the
-- job's timeout (else its queue's, else NULL) and run_at; none when nothing is ready.
--
-- Order: within a queue, highest job priority first, then oldest run_at. Over several
-- queues, a queue of higher priority (skiplock.queues.priority) is served first. Among
-- queues of the same priority whose weights are all equal (the default), jobs compete
-- by job priority, then age, as if in one queue; where their weights differ, each claim
-- takes from them in proportion to their weights (a weighted random draw, so that
-- one-job claims follow the proportion too), each queue in its own order.
--
-- Queues with limits (max_running, rate_limit) are claimed under their queue row's lock
-- with a budget. Without limits the claim is one UPDATE whose RETURNING is the result:
-- no CTE holding whole rows, no statements for keys and rate windows that are not there.
-- The queue rows are read once either way.
--
-- p_run_after and p_priority_floor (NULL: no bound) bound a claim per queue, aligned
-- with p_queues: queue i gives only jobs with priority >= p_priority_floor[i] and run_at
-- >= p_run_after[i] (a NULL entry: queue i unbounded). An old snapshot (an idle
-- REPEATABLE READ transaction, a long report, a standby with hot_standby_feedback) keeps
-- every claimed job's dead entry at the front of jobs_claim_idx, and a claim walking
-- from the front visits them all, slower the longer the snapshot is held. A worker whose
-- claims turn slow passes, per queue, the lowest priority and the oldest run_at its last
-- full claim started there: no older job of those priorities is waiting in that queue,
-- and the index scan seeks past the dead entries (PostgreSQL 18 skips to each priority;
-- older versions check the bound in the index, without visiting the table). The lower
-- priorities of a bounded queue wait for the worker's next full claim, which it makes as
-- soon as a bounded queue gives nothing.
CREATE OR REPLACE FUNCTION skiplock.claim_jobs(
    p_worker_id uuid, p_queues text[], p_limit integer,
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL,
    p_run_after timestamptz[] DEFAULT NULL, p_priority_floor smallint[] DEFAULT NULL
) RETURNS TABLE (id bigint, task text, args jsonb, queue text, priority smallint,
                 attempt integer, max_attempts integer, timeout interval,
                 created_at timestamptz, tags text[], meta jsonb, run_at timestamptz)
LANGUAGE plpgsql
-- Planned once per session, never with a seq scan: planning each claim costs more than
-- the claim, and a plan made on an empty table would keep its seq scan of jobs once the
-- table is big; without seq scans it is an index plan at any size. In the function, not
-- the session, so that it holds behind a transaction-mode pooler too.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
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
    v_ranked text[];
    v_ranks smallint[];
    v_weights integer[];
    v_ordered boolean;
BEGIN
    -- One read of the queue rows gives whether any has limits, the default timeouts of
    -- those that have one (for jobs without their own), and whether any is ordered: a
    -- priority of its own, or weights that differ.
    SELECT bool_or(lq.max_running IS NOT NULL OR lq.rate_limit IS NOT NULL),
           array_agg(lq.name::text) FILTER (WHERE lq.timeout IS NOT NULL),
           array_agg(lq.timeout) FILTER (WHERE lq.timeout IS NOT NULL),
           bool_or(lq.priority <> 0) OR min(lq.weight) <> max(lq.weight)
    INTO v_has_limits, v_timeout_queues, v_timeouts, v_ordered
    FROM skiplock.queues lq WHERE lq.name = ANY (p_queues);
    IF v_ordered AND cardinality(p_queues) > 1 THEN
        -- The queues that are not plain: a priority of their own, or a weight that
        -- differs from another's of the same priority (kept; NULL: by job priority).
        SELECT array_agg(lq.name::text), array_agg(lq.priority),
               array_agg(CASE WHEN lq.spread THEN lq.weight END)
        INTO v_ranked, v_ranks, v_weights
        FROM (SELECT q.name, q.priority, q.weight,
                     min(q.weight) OVER w <> max(q.weight) OVER w AS spread
              FROM skiplock.queues q WHERE q.name = ANY (p_queues)
              WINDOW w AS (PARTITION BY q.priority)) lq
        WHERE lq.priority <> 0 OR lq.spread;
    END IF;
    IF v_has_limits THEN
        -- Queues with limits: lock their rows (claimers of a limited queue take turns)
        -- and work out how many jobs each may start now. Lock first, count after: the
        -- counting statement must take its snapshot once the previous claimer of this
        -- queue has committed, or it would not see that claimer's jobs running.
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
    -- jobs each queue holds, in the order above, and lock only that many per queue below.
    -- Locking p_limit per queue and claiming p_limit in all would hold the surplus rows
    -- until commit: a concurrent claimer would skip them and start lower-priority jobs of
    -- the same queue first (tests/faults/test_claim_order.py). One queue needs no such
    -- pass. A queue's n-th job ranks (n - 1 + e) / weight, e drawn from Exp(1): the first
    -- jobs of two queues race as exponentials, so even a one-job claim picks a queue with
    -- the probability of its weight's share.
    IF cardinality(p_queues) > 1 THEN
        SELECT array_agg(s.queue), array_agg(s.jobs) INTO v_shared, v_shares
        FROM (SELECT best.queue, count(*)::integer AS jobs
              FROM (SELECT c.queue
                    FROM unnest(p_queues, p_run_after, p_priority_floor) AS q(name, after, floor)
                    LEFT JOIN unnest(v_limited, v_budgets) AS budget(name, jobs)
                           ON budget.name = q.name
                    LEFT JOIN unnest(v_ranked, v_ranks, v_weights) AS rank(name, priority, weight)
                           ON rank.name = q.name
                    CROSS JOIN LATERAL (
                        -- numbered in any order: only how many each queue gets counts
                        SELECT top.*, row_number() OVER () AS n
                        FROM (SELECT c.queue, c.priority, c.run_at, c.id
                              FROM skiplock.jobs c
                              WHERE c.queue = q.name AND c.state = 'queued'
                                AND c.priority >= coalesce(q.floor, -32768)
                                AND c.run_at BETWEEN coalesce(q.after, '-infinity') AND v_now
                                AND (c.expires_at IS NULL OR c.expires_at > v_now)
                              ORDER BY c.priority DESC, c.run_at, c.id
                              LIMIT least(p_limit, coalesce(budget.jobs, p_limit))) top
                    ) c
                    WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq
                                      WHERE pq.name = q.name AND pq.paused)
                    ORDER BY coalesce(rank.priority, 0) DESC,
                             CASE WHEN rank.weight IS NULL THEN 0
                                  ELSE (c.n - 1 - ln(1 - random())) / rank.weight END,
                             c.priority DESC, c.run_at, c.id
                    LIMIT p_limit) best
              GROUP BY best.queue) s;
    END IF;

    IF v_limited IS NOT NULL THEN
        -- With limits, one statement also counts the started jobs against the rate
        -- window of their queue (rows locked above) and frees their "while queued" keys.
        RETURN QUERY
        WITH claimed AS (
        UPDATE skiplock.jobs j
        SET state = 'running', attempt = j.attempt + 1, worker_id = p_worker_id,
            started_at = v_now, lease_expires_at = v_now + p_lease, progress = NULL
        WHERE j.id = ANY (ARRAY(
            SELECT picked.id
            FROM unnest(p_queues, p_run_after, p_priority_floor) AS q(name, after, floor)
            LEFT JOIN unnest(v_limited, v_budgets) AS budget(name, jobs) ON budget.name = q.name
            LEFT JOIN unnest(v_shared, v_shares) AS share(name, jobs) ON share.name = q.name
            CROSS JOIN LATERAL (
                SELECT c.id, c.priority, c.run_at
                FROM skiplock.jobs c
                WHERE c.queue = q.name AND c.state = 'queued'
                  AND c.priority >= coalesce(q.floor, -32768)
                  AND c.run_at BETWEEN coalesce(q.after, '-infinity') AND v_now
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
        FROM unnest(p_queues, p_run_after, p_priority_floor) AS q(name, after, floor)
        LEFT JOIN unnest(v_shared, v_shares) AS share(name, jobs) ON share.name = q.name
        CROSS JOIN LATERAL (
            SELECT c.id, c.priority, c.run_at
            FROM skiplock.jobs c
            WHERE c.queue = q.name AND c.state = 'queued'
              AND c.priority >= coalesce(q.floor, -32768)
              AND c.run_at BETWEEN coalesce(q.after, '-infinity') AND v_now
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

-- heartbeat_jobs: extend the leases of the listed running jobs of p_worker_id in one
-- statement and record the worker as alive, with the lease it renews with, p_stuck_jobs
-- (handler threads still running after their job timed out or was cancelled) and
-- p_stalled_loops (its background loops failing for over a lease); NULL leaves either
-- as it is (callers from other languages that know nothing of them). A job is extended
-- only while it is still running under this token, (p_worker_id, p_attempts[i]); the
-- worker treats every listed job missing from the result as lost and stops its handler.
-- cancel_requested tells the worker to cancel that handler. One more row, with a NULL
-- id (and cancel_requested true), says that the worker itself was asked to stop
-- (stop_worker). Raises invalid_parameter_value for a negative p_stuck_jobs.
CREATE OR REPLACE FUNCTION skiplock.heartbeat_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[],
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL,
    p_stuck_jobs integer DEFAULT NULL, p_stalled_loops text[] DEFAULT NULL
) RETURNS TABLE (id bigint, cancel_requested boolean)
LANGUAGE plpgsql
-- planned per call (a generic plan joins a big unnest in a nested loop)
SET plan_cache_mode = force_custom_plan
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    IF p_stuck_jobs < 0 THEN
        RAISE EXCEPTION 'p_stuck_jobs must be >= 0, got %', p_stuck_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE skiplock.workers w
    SET last_heartbeat_at = v_now,
        lease = p_lease,
        stuck_jobs = coalesce(p_stuck_jobs, w.stuck_jobs),
        stalled_loops = coalesce(p_stalled_loops, w.stalled_loops)
    WHERE w.id = p_worker_id;
    RETURN QUERY
    UPDATE skiplock.jobs j SET lease_expires_at = v_now + p_lease
    FROM unnest(p_ids, p_attempts) AS u(id, attempt)
    WHERE j.id = ANY (p_ids) AND j.id = u.id AND j.attempt = u.attempt
      AND j.worker_id = p_worker_id AND j.state = 'running'
    RETURNING j.id, j.cancel_requested_at IS NOT NULL;
    RETURN QUERY
    SELECT NULL::bigint, true FROM skiplock.workers w
    WHERE w.id = p_worker_id AND w.stop_requested_at IS NOT NULL;
END
$$;

-- set_job_progress: store a running job's progress (fraction 0..1 and a message),
-- fenced by its token. Returns false when the job is no longer this worker's.
CREATE OR REPLACE FUNCTION skiplock.set_job_progress(
    p_worker_id uuid, p_id bigint, p_attempt integer, p_fraction float8, p_message text
) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
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
