-- Finish: a running job leaves the hot table (complete_jobs, fail_jobs) or goes back to
-- the queue (release_jobs), each checked against its fencing token (worker_id,
-- attempt). The internal moves (_finish_jobs, _move_to_dead_jobs, _free_unique_keys)
-- are shared with the operator actions and maintenance; the
-- statement triggers on job_history and dead_jobs keep the totals and tell result
-- waiters. The batch functions are planned per call (see 040_claim.sql).

-- _free_unique_keys (internal): the jobs p_ids have finished: free the unique keys they
-- hold until they finish, and start the hold period of the others. Only keys still
-- held by these very jobs are touched.
CREATE OR REPLACE FUNCTION skiplock._free_unique_keys(p_ids bigint[], p_now timestamptz)
RETURNS void
LANGUAGE sql
SET plan_cache_mode = force_custom_plan
AS $$
    DELETE FROM skiplock.unique_keys k WHERE k.job_id = ANY (p_ids) AND k.scope <> 'period';
    UPDATE skiplock.unique_keys k SET holds_until = p_now + k.period
    WHERE k.job_id = ANY (p_ids) AND k.scope = 'period' AND k.holds_until IS NULL;
$$;

-- _finish_jobs (internal): the one move of jobs out of the hot table into job_history
-- with p_status. With p_worker_id, only the jobs still running under their token
-- (p_worker_id, p_attempts[i]) move: each token is checked by its own LATERAL probe (so
-- the plan does not hang on the table's statistics), and the DELETE re-checks owner and
-- state as it takes the row locks. Without it (NULL), the caller has locked and checked
-- the rows.
-- p_results lines up with p_ids (NULL: no results). Frees unique keys and settles
-- dependents. Returns the moved ids (NULL when none moved).
CREATE OR REPLACE FUNCTION skiplock._finish_jobs(
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
    -- ids found. A DELETE joining the unnest itself is at the mercy of the statistics:
    -- on a fresh table whose statistics hold no row of this worker it estimates one
    -- running job, puts the jobs outer and rescans the unnest for each (quadratic in the
    -- batch); on a table that looks small it hashes a full scan, which under an old
    -- snapshot walks every dead row version. The DELETE re-checks owner and state on the
    -- row it locks: a row changed since the probe is taken only if still running under
    -- this worker, and its attempt cannot have changed without a claim of a queued row.
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
    IF v_keyed IS NOT NULL THEN
        PERFORM skiplock._free_unique_keys(v_keyed, p_now);
    END IF;
    IF v_ids IS NOT NULL THEN
        PERFORM skiplock._settle_dependents(v_ids, p_now);
    END IF;
    RETURN v_ids;
END
$$;

-- _move_to_dead_jobs (internal): move rows out of the hot table into dead_jobs (status `failed`),
-- callback URL included; the caller has locked them, checked their token and appended
-- the error entry. Frees their unique keys and settles the jobs waiting on them.
-- Returns the buried ids.
CREATE OR REPLACE FUNCTION skiplock._move_to_dead_jobs(p_ids bigint[], p_now timestamptz)
RETURNS SETOF bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
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
            depends_on, errors, progress, created_at, started_at, failed_at, worker_id,
            callback_url)
        SELECT b.id, b.task, b.args, b.queue, b.priority, b.attempt, b.max_attempts,
               b.retry_policy, b.timeout, b.tags, b.meta, b.unique_key, b.expires_at,
               b.depends_on, b.errors, b.progress, b.created_at, b.started_at, p_now,
               b.worker_id, b.callback_url
        FROM buried b
        RETURNING dead_jobs.id, dead_jobs.unique_key
    )
    SELECT array_agg(d.id), array_agg(d.id) FILTER (WHERE d.unique_key IS NOT NULL)
    INTO v_ids, v_keyed FROM dead d;
    IF v_keyed IS NOT NULL THEN
        PERFORM skiplock._free_unique_keys(v_keyed, p_now);
    END IF;
    PERFORM skiplock._settle_dependents(v_ids, p_now);
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- complete_jobs: record success for a batch of p_worker_id's jobs, p_results[i] being
-- the result of (p_ids[i], attempt p_attempts[i]). Only jobs still running under that
-- token are completed; a completion from a worker that lost the lease changes nothing,
-- and completing twice is a no-op. Returns the ids that were completed.
CREATE OR REPLACE FUNCTION skiplock.complete_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_results jsonb[],
    p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE sql
SET plan_cache_mode = force_custom_plan
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT unnest(skiplock._finish_jobs(coalesce(p_worker_id, '00000000-0000-0000-0000-000000000000'),
                                       p_ids, p_attempts, 'succeeded', p_results,
                                       coalesce(p_now, now())))
$$;

-- fail_jobs: record a failed attempt for a batch of p_worker_id's jobs. p_errors[i] is
-- an object {"error": text, "traceback": text, ...}; "retry": false skips the remaining
-- attempts and "retry_in": seconds overrides the policy's delay. The retry policy is
-- the job's, else its queue's, else the built-in one. Per job, checked under the same
-- fencing token as complete_jobs:
--   cancel requested        → cancelled (job_history)
--   attempts left, retrying → queued again at now + retry delay (status `retrying`,
--                             counted as `retried`)
--   otherwise               → dead_jobs (status `failed`)
-- Returns (id, status) for the jobs it changed; stale tokens are ignored.
CREATE OR REPLACE FUNCTION skiplock.fail_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_errors jsonb[],
    p_now timestamptz DEFAULT NULL
) RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
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
        PERFORM skiplock._move_to_dead_jobs(
            ARRAY(SELECT c.id FROM unnest(v_ids, v_outcomes) AS c(id, outcome)
                  WHERE c.outcome = 'failed'),
            v_now);
    END IF;

    IF 'cancelled' = ANY (v_outcomes) THEN
        PERFORM skiplock._finish_jobs(NULL,
            ARRAY(SELECT c.id FROM unnest(v_ids, v_outcomes) AS c(id, outcome)
                  WHERE c.outcome = 'cancelled'),
            NULL, 'cancelled', NULL, v_now);
    END IF;
    RETURN QUERY SELECT * FROM unnest(v_ids, v_outcomes);
END
$$;

-- release_jobs: hand running jobs back to the queue without counting the attempt: a
-- worker shutting down gives back what it could not finish (p_delay NULL: ready at once,
-- and workers are woken), a worker that has no handler for a job's task gives it back
-- due again after p_delay (a worker that serves the task takes it then). Locks the rows
-- and checks the fencing token (p_worker_id, p_attempts[i]) and that they still run;
-- stale tokens change nothing. A released job whose cancellation was requested ends
-- cancelled instead. Returns the ids released or cancelled (none: an empty set).
CREATE OR REPLACE FUNCTION skiplock.release_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[], p_delay interval DEFAULT NULL,
    p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_ids bigint[];
    v_cancelled bigint[];
    v_queues text;
BEGIN
    IF p_delay < interval '0' THEN
        RAISE EXCEPTION 'release_jobs: p_delay must not be negative, got %', p_delay
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(j.id) FILTER (WHERE j.cancel_requested_at IS NOT NULL)
    INTO v_cancelled
    FROM (SELECT j.id, j.cancel_requested_at
          FROM unnest(p_ids, p_attempts) AS u(id, attempt)
          JOIN skiplock.jobs j ON j.id = u.id
          WHERE j.id = ANY (p_ids) AND j.attempt = u.attempt AND j.worker_id = p_worker_id
            AND j.state = 'running'
          FOR UPDATE OF j) j;
    IF v_cancelled IS NOT NULL THEN
        PERFORM skiplock._finish_jobs(NULL, v_cancelled, NULL, 'cancelled', NULL, v_now);
    END IF;

    WITH released AS (
        UPDATE skiplock.jobs j
        SET state = 'queued', attempt = j.attempt - 1,
            run_at = v_now + coalesce(p_delay, interval '0'),
            worker_id = NULL, lease_expires_at = NULL
        FROM unnest(p_ids, p_attempts) AS u(id, attempt)
        WHERE j.id = ANY (p_ids) AND j.id = u.id AND j.attempt = u.attempt
          AND j.worker_id = p_worker_id AND j.state = 'running'
        RETURNING j.id, j.queue
    )
    SELECT array_agg(r.id), string_agg(DISTINCT r.queue, ',')
    INTO v_ids, v_queues FROM released r;
    -- Jobs due later wake nobody: the workers' polls find them when they are due.
    IF p_delay IS NULL OR p_delay = interval '0' THEN
        PERFORM skiplock._wake_workers(v_queues);
    END IF;
    RETURN QUERY SELECT x.id FROM unnest(coalesce(v_ids, '{}') || coalesce(v_cancelled, '{}')) AS x(id)
                 ORDER BY x.id;
END
$$;

-- _jobs_finished (trigger): after every statement that inserts finished jobs into
-- job_history or dead_jobs: add them to queue_totals, and tell result waiters (channel
-- skiplock_finished, payload the comma-separated ids, or '*' when too many for one
-- payload).
-- Its plans are cached (plan_cache_mode = auto): it fires inside the finish functions,
-- which plan every statement per call (force_custom_plan), a setting a trigger inherits;
-- statements over the transition table alone gain nothing from that, and planning them
-- each time cost as much as running them. The same holds for the other finish triggers.
CREATE OR REPLACE FUNCTION skiplock._jobs_finished() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = auto
AS $$
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

-- totals and result waiters, once per statement
CREATE OR REPLACE TRIGGER job_history_inserted AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._jobs_finished();
CREATE OR REPLACE TRIGGER dead_jobs_inserted AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._jobs_finished();
