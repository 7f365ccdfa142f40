-- Fixes for breaches found by the fault-injection suite (tests/faults).

-- Scenario 10: jsonb stores documents that clients cannot read back. PostgreSQL accepts
-- a few thousand levels of nesting and numbers of up to 131,072 digits, but Python's
-- json (what every worker decodes claimed args with) stops at ~1,000 levels and at
-- 4,300-digit integers: such a row made every claim that picked it fail, for the whole
-- batch. Job args and meta must now nest at most 200 levels, whoever inserts them.
-- (Integers of more than 4,300 digits are still stored: numeric storage is compact
-- whatever the magnitude, so there is no cheap gate, and walking every document cost
-- ~25% of enqueue_many's time. Python and HTTP producers refuse them.)

-- Nesting, on the domains: a document under 800 bytes cannot nest 200 levels, so the
-- walk runs only for bigger ones (no measurable cost on a 10,000-job enqueue_many).
-- NOT VALID: rows already stored are not re-checked (a deployment must not fail on them).
ALTER DOMAIN skiplock.job_args
    ADD CONSTRAINT args_nest_at_most_200_levels
    CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'))
    NOT VALID;
ALTER DOMAIN skiplock.job_meta
    ADD CONSTRAINT meta_nest_at_most_200_levels
    CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'))
    NOT VALID;


-- Scenario 9: claim_jobs over several queues locked rows it did not claim, so
-- concurrent claimers started lower-priority jobs of a queue first (see the comment
-- inside). Only the per-queue share pass and its LIMIT are new.
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

    -- Over several queues, first work out (without locking) how many of the best p_limit
    -- jobs each queue holds, and lock only that many per queue below. Locking p_limit
    -- per queue and claiming p_limit in all held the surplus rows until commit: a
    -- concurrent claimer skipped them and started lower-priority jobs of the same queue
    -- first. One queue needs no such pass.
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
