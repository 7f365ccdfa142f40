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

-- configure_queue: change any of a queue's settings in one statement. p_settings is a
-- JSON object whose keys are the settings to change; a key left out keeps its value,
-- a key set to null clears it (paused: false, priority: 0, weight: 1, the others:
-- none). Keys: paused, max_running, rate_limit and rate_period (limits, see
-- set_queue_limits), retry_policy, timeout and max_attempts (defaults, see
-- set_queue_defaults), priority and weight (order, see set_queue_order); durations as
-- seconds or interval text. An unknown key raises invalid_parameter_value, a bad value
-- the table's check. Creates the queue row if needed, locks it (the UPDATE), resets the
-- rate window when the rate changes, and wakes the workers. Every queue setter writes
-- through it.
CREATE OR REPLACE FUNCTION skiplock.configure_queue(p_queue text, p_settings jsonb)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_known CONSTANT text[] := ARRAY['paused', 'max_running', 'rate_limit', 'rate_period',
        'retry_policy', 'timeout', 'max_attempts', 'priority', 'weight'];
    v_unknown text;
    s jsonb := coalesce(p_settings, '{}');
BEGIN
    IF jsonb_typeof(s) <> 'object' THEN
        RAISE EXCEPTION 'configure_queue: p_settings must be a JSON object, got %', s
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(k, ', ' ORDER BY k) INTO v_unknown
    FROM jsonb_object_keys(s) AS k WHERE k <> ALL (v_known);
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION 'configure_queue: unknown setting(s) %', v_unknown
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO skiplock.queues (name) VALUES (p_queue) ON CONFLICT (name) DO NOTHING;
    UPDATE skiplock.queues q SET
        paused = CASE WHEN s ? 'paused' THEN coalesce((s ->> 'paused')::boolean, false)
                      ELSE q.paused END,
        max_running = CASE WHEN s ? 'max_running' THEN (s ->> 'max_running')::integer
                           ELSE q.max_running END,
        rate_limit = CASE WHEN s ? 'rate_limit' THEN (s ->> 'rate_limit')::integer
                          ELSE q.rate_limit END,
        rate_period = CASE WHEN s ? 'rate_period' THEN (s ->> 'rate_period')::interval
                           ELSE q.rate_period END,
        rate_window_start = CASE WHEN s ?| ARRAY['rate_limit', 'rate_period'] THEN NULL
                                 ELSE q.rate_window_start END,
        rate_window_count = CASE WHEN s ?| ARRAY['rate_limit', 'rate_period'] THEN 0
                                 ELSE q.rate_window_count END,
        retry_policy = CASE WHEN s ? 'retry_policy' THEN nullif(s -> 'retry_policy', 'null')
                            ELSE q.retry_policy END,
        timeout = CASE WHEN s ? 'timeout' THEN (s ->> 'timeout')::interval ELSE q.timeout END,
        max_attempts = CASE WHEN s ? 'max_attempts' THEN (s ->> 'max_attempts')::integer
                            ELSE q.max_attempts END,
        priority = CASE WHEN s ? 'priority' THEN coalesce((s ->> 'priority')::smallint, 0)
                        ELSE q.priority END,
        weight = CASE WHEN s ? 'weight' THEN coalesce((s ->> 'weight')::integer, 1)
                      ELSE q.weight END
    WHERE q.name = p_queue;
    PERFORM pg_notify('skiplock_jobs', p_queue);
END
$$;

-- set_queue_limits: cap a queue across all workers: at most p_max_running jobs running
-- at once, and at most p_rate_limit jobs started per p_rate_period (fixed windows that
-- open at the first start after the previous one closed, so up to twice the limit can
-- start across a window boundary). Sets all three: NULL removes a limit. Creates the
-- queue row if needed and wakes the workers (configure_queue). Enforced by claim_jobs
-- under the queue's row lock.
CREATE OR REPLACE FUNCTION skiplock.set_queue_limits(
    p_queue text, p_max_running integer DEFAULT NULL, p_rate_limit integer DEFAULT NULL,
    p_rate_period interval DEFAULT NULL
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT skiplock.configure_queue(p_queue, jsonb_build_object(
        'max_running', p_max_running, 'rate_limit', p_rate_limit, 'rate_period', p_rate_period))
$$;

-- set_queue_defaults: a queue's default retry policy, timeout and max_attempts, for its
-- jobs that set none and whose task publishes none. The retry policy and timeout are
-- read when used (a change applies to jobs already waiting); max_attempts is given to a
-- job when it is enqueued. Sets all three: NULL (or left out) clears one. Creates the
-- queue row if needed and wakes the workers (configure_queue).
CREATE OR REPLACE FUNCTION skiplock.set_queue_defaults(
    queue text, retry_policy jsonb DEFAULT NULL, timeout interval DEFAULT NULL,
    max_attempts integer DEFAULT NULL
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT skiplock.configure_queue(set_queue_defaults.queue, jsonb_build_object(
        'retry_policy', set_queue_defaults.retry_policy,
        'timeout', set_queue_defaults.timeout,
        'max_attempts', set_queue_defaults.max_attempts))
$$;

-- set_queue_order: a queue's place among the queues a worker serves. A worker takes the
-- work of a higher p_priority (-100..100) queue first; among queues of the same priority
-- it claims in proportion to their p_weight (1..1000) (claim_jobs). Sets both: NULL
-- gives the built-in priority 0 and weight 1. Creates the queue row if needed and wakes
-- the workers (configure_queue); an out-of-range value raises check_violation.
CREATE OR REPLACE FUNCTION skiplock.set_queue_order(
    p_queue text, p_priority integer DEFAULT 0, p_weight integer DEFAULT 1
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT skiplock.configure_queue(p_queue, jsonb_build_object(
        'priority', p_priority, 'weight', p_weight))
$$;
