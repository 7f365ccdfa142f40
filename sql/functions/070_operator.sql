-- Operator actions: cancel, retry, delete and redrive jobs, purge dead letters, and
-- create, delete, pause, resume, limit and configure queues. The REST API and the CLI
-- call these; none of them writes its own UPDATE.

-- cancel_job: cancel one job. Not yet running (waiting, scheduled, queued, retrying) →
-- cancelled at once. Running → cancel_requested_at is set and its worker is told on
-- channel skiplock_cancel; the handler's cancellation signal fires and the job ends
-- `cancelled` (unless it finishes first). Returns the job's status after the call, or
-- NULL when no job has this id; a finished job is left as it is.
CREATE OR REPLACE FUNCTION skiplock.cancel_job(p_id bigint, p_now timestamptz DEFAULT NULL)
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
    PERFORM skiplock._finish_jobs(NULL, ARRAY[p_id], NULL, 'cancelled', NULL,
                                  coalesce(p_now, now()));
    RETURN 'cancelled';
END
$$;

-- retry_job: run a job again. A failed (dead) or finished job goes back to the hot table
-- (without its unique key: a retry is an explicit request to run it again; with its
-- callback URL) with the same id, attempts reset and its error history kept; a job that
-- is waiting to run (scheduled, retrying, queued) is made ready now. Raises for a
-- running job. Returns the job's status after the call, or NULL when no job has this
-- id.
CREATE OR REPLACE FUNCTION skiplock.retry_job(p_id bigint, p_now timestamptz DEFAULT NULL)
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
                  d.timeout, d.tags, d.meta, d.errors, d.created_at, d.callback_url
    ), revived_history AS (
        DELETE FROM skiplock.job_history h WHERE h.id = p_id
        RETURNING h.id, h.task, h.args, h.queue, h.priority, h.max_attempts, h.retry_policy,
                  h.timeout, h.tags, h.meta, h.errors, h.created_at, h.callback_url
    )
    INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts, retry_policy,
                               timeout, tags, meta, errors, created_at, callback_url, run_at)
    SELECT r.*, v_now FROM (SELECT * FROM revived UNION ALL SELECT * FROM revived_history) r;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN 'queued';
END
$$;

-- delete_job: remove a finished job for good, from job_history (succeeded, cancelled,
-- expired) or dead_jobs (failed). A live job (in the hot table: waiting, scheduled,
-- queued, retrying, running) is refused with object_not_in_prerequisite_state: cancel it
-- first. The row is locked by the DELETE itself; the totals in queue_totals are not
-- decremented (they count what happened, not what is kept). Returns the status the job
-- had, or NULL when no job has this id.
CREATE OR REPLACE FUNCTION skiplock.delete_job(p_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    IF EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = p_id) THEN
        RAISE EXCEPTION 'job % has not finished; cancel it first', p_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM skiplock.job_history h WHERE h.id = p_id RETURNING h.status::text INTO v_status;
    IF v_status IS NULL THEN
        DELETE FROM skiplock.dead_jobs d WHERE d.id = p_id RETURNING 'failed' INTO v_status;
    END IF;
    RETURN v_status;
END
$$;

-- redrive_dead_letters: move dead letters back to the queue (same ids, attempts reset,
-- error history and callback URL kept). p_queue / p_task filter (NULL: any). Rows are
-- taken with SKIP LOCKED, so redrives at once never move the same job and never wait on
-- each other; call it again until it returns fewer than p_limit ids to redrive
-- everything in bounded batches. The insert wakes workers through the _jobs_inserted
-- trigger. Returns the ids moved; none when nothing matches.
CREATE OR REPLACE FUNCTION skiplock.redrive_dead_letters(
    p_queue text DEFAULT NULL, p_task text DEFAULT NULL, p_limit integer DEFAULT 1000,
    p_now timestamptz DEFAULT NULL
) RETURNS SETOF bigint
LANGUAGE sql AS $$
    WITH picked AS MATERIALIZED (
        SELECT d.id FROM skiplock.dead_jobs d
        WHERE (p_queue IS NULL OR d.queue = p_queue) AND (p_task IS NULL OR d.task = p_task)
        ORDER BY d.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), revived AS (
        DELETE FROM skiplock.dead_jobs d USING picked p WHERE d.id = p.id
        RETURNING d.id, d.task, d.args, d.queue, d.priority, d.max_attempts, d.retry_policy,
                  d.timeout, d.tags, d.meta, d.errors, d.created_at, d.callback_url
    ), inserted AS (
        INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts,
                                   retry_policy, timeout, tags, meta, errors, created_at,
                                   callback_url, run_at)
        SELECT r.*, coalesce(p_now, now()) FROM revived r
        RETURNING id
    )
    SELECT id FROM inserted ORDER BY id
$$;

-- purge_dead_letters: delete dead letters for good. p_queue / p_task filter (NULL: any);
-- p_older_than keeps the ones that failed more recently than that (NULL: any age).
-- Rows are locked by the DELETE; a dead letter being redriven at the same moment is
-- either redriven or purged, never both. Returns how many were deleted (0 when nothing
-- matches).
CREATE OR REPLACE FUNCTION skiplock.purge_dead_letters(
    p_queue text DEFAULT NULL, p_task text DEFAULT NULL, p_older_than interval DEFAULT NULL,
    p_now timestamptz DEFAULT NULL
) RETURNS bigint
LANGUAGE sql AS $$
    WITH purged AS (
        DELETE FROM skiplock.dead_jobs d
        WHERE (p_queue IS NULL OR d.queue = p_queue) AND (p_task IS NULL OR d.task = p_task)
          AND (p_older_than IS NULL OR d.failed_at < coalesce(p_now, now()) - p_older_than)
        RETURNING 1)
    SELECT count(*) FROM purged
$$;

-- create_queue: create a queue row explicitly (enqueue creates one on first use too).
-- The name is checked by the queue_name domain (raises check_violation). Takes no lock
-- beyond the INSERT's; a concurrent create of the same name waits for the first and then
-- does nothing. Returns true when created, false when the queue already exists (its
-- settings are left as they are).
CREATE OR REPLACE FUNCTION skiplock.create_queue(p_name text, p_paused boolean DEFAULT false)
RETURNS boolean
LANGUAGE sql AS $$
    WITH created AS (
        INSERT INTO skiplock.queues (name, paused)
        VALUES (p_name::skiplock.queue_name, coalesce(p_paused, false))
        ON CONFLICT (name) DO NOTHING
        RETURNING 1)
    SELECT EXISTS (SELECT FROM created)
$$;

-- delete_queue: delete an empty queue: one with no job in the hot table (waiting,
-- scheduled, queued, retrying or running). Its finished jobs (history, dead letters)
-- and its totals stay. Locks the queue row (FOR UPDATE) before looking for jobs, so a
-- concurrent delete_queue or pause waits. A job enqueued into the queue by a transaction
-- that has not committed yet is not seen: it still runs (claims do not need the queue
-- row), and the next enqueue into the queue re-creates the row. Raises
-- object_not_in_prerequisite_state when jobs remain; returns false when no queue has
-- this name, true when it was deleted.
CREATE OR REPLACE FUNCTION skiplock.delete_queue(p_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM skiplock.queues q WHERE q.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    -- The hot table is small by design; no index on queue alone is needed for this.
    IF EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.queue = p_name) THEN
        RAISE EXCEPTION 'queue % still has jobs; cancel or finish them first', p_name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM skiplock.queues q WHERE q.name = p_name;
    RETURN true;
END
$$;

-- pause_queue: pause queue p_queue: it keeps its jobs but claim_jobs skips it; running
-- jobs finish. Returns false for a queue that has never been seen.
CREATE OR REPLACE FUNCTION skiplock.pause_queue(p_queue text) RETURNS boolean
LANGUAGE sql AS $$
    WITH paused AS (UPDATE skiplock.queues SET paused = true WHERE name = p_queue RETURNING 1)
    SELECT EXISTS (SELECT FROM paused)
$$;

-- resume_queue: let claim_jobs take the jobs of paused queue p_queue again, and wake the
-- workers. Returns false for a queue that has never been seen.
CREATE OR REPLACE FUNCTION skiplock.resume_queue(p_queue text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE skiplock.queues SET paused = false WHERE name = p_queue;
    IF FOUND THEN
        PERFORM pg_notify('skiplock_jobs', p_queue);
    END IF;
    RETURN FOUND;
END
$$;

-- set_queue_limits: cap a queue across all workers: at most p_max_running jobs running
-- at once, and at most p_rate_limit jobs started per p_rate_period (fixed windows that
-- open at the first start after the previous one closed, so up to twice the limit can
-- start across a window boundary). NULL removes a limit. Creates the queue row if
-- needed. Enforced by claim_jobs under the queue's row lock.
CREATE OR REPLACE FUNCTION skiplock.set_queue_limits(
    p_queue text, p_max_running integer DEFAULT NULL, p_rate_limit integer DEFAULT NULL,
    p_rate_period interval DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
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

-- set_queue_defaults: a queue's default retry policy and timeout, for its jobs that set
-- none. NULL (or left out) clears one. Creates the queue row if needed.
CREATE OR REPLACE FUNCTION skiplock.set_queue_defaults(
    queue text, retry_policy jsonb DEFAULT NULL, timeout interval DEFAULT NULL
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    INSERT INTO skiplock.queues (name, retry_policy, timeout)
    VALUES (set_queue_defaults.queue, set_queue_defaults.retry_policy,
            set_queue_defaults.timeout)
    ON CONFLICT (name) DO UPDATE
        SET retry_policy = excluded.retry_policy, timeout = excluded.timeout
$$;
