-- skiplock 0002: admin actions (the REST API's and the CLI's door to the same SQL).
--
-- Queues made and removed on purpose, finished jobs deleted, dead letters redriven and
-- purged in bulk, a queue's recent throughput, and a graceful stop for a worker. Like
-- 0001, every way a row moves is one function here; callers never write their own
-- UPDATE or DELETE.

-- Dead letters are listed and redriven per queue, newest first; without this index a
-- filtered page walks the whole table backwards. dead_jobs is written once per dead
-- job, so the extra index costs nothing on the hot path.
CREATE INDEX dead_jobs_queue_idx ON skiplock.dead_jobs (queue, id);

-- create_queue: create a queue row explicitly (enqueue creates one on first use too).
-- The name is checked by the queue_name domain (raises check_violation). Takes no lock
-- beyond the INSERT's; a concurrent create of the same name waits for the first and then
-- does nothing. Returns true when created, false when the queue already exists (its
-- settings are left as they are).
CREATE FUNCTION skiplock.create_queue(p_name text, p_paused boolean DEFAULT false)
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
CREATE FUNCTION skiplock.delete_queue(p_name text) RETURNS boolean
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

-- delete_job: remove a finished job for good, from job_history (succeeded, cancelled,
-- expired) or dead_jobs (failed). A live job (in the hot table: waiting, scheduled,
-- queued, retrying, running) is refused with object_not_in_prerequisite_state: cancel it
-- first. The row is locked by the DELETE itself; the totals in queue_totals are not
-- decremented (they count what happened, not what is kept). Returns the status the job
-- had, or NULL when no job has this id.
CREATE FUNCTION skiplock.delete_job(p_id bigint) RETURNS text
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

-- redrive_dead_jobs: send up to p_limit dead letters back to their queues, oldest first,
-- as retry_job does for one: same id, attempts reset, error history kept, ready now.
-- p_queue / p_task filter (NULL: any). Rows are taken FOR UPDATE SKIP LOCKED, so two
-- redrives at once never move the same job and never wait on each other; call it again
-- until it returns fewer than p_limit ids to redrive everything in bounded batches.
-- The insert wakes workers through the jobs_inserted trigger. Returns the ids moved;
-- none when nothing matches.
CREATE FUNCTION skiplock.redrive_dead_jobs(
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
                  d.timeout, d.tags, d.meta, d.errors, d.created_at
    ), inserted AS (
        INSERT INTO skiplock.jobs (id, task, args, queue, priority, max_attempts,
                                   retry_policy, timeout, tags, meta, errors, created_at,
                                   run_at)
        SELECT r.*, coalesce(p_now, now()) FROM revived r
        RETURNING id
    )
    SELECT id FROM inserted ORDER BY id
$$;

-- purge_dead_jobs: delete dead letters for good. p_queue / p_task filter (NULL: any);
-- p_older_than keeps the ones that failed more recently than that (NULL: any age).
-- Rows are locked by the DELETE; a dead letter being redriven at the same moment is
-- either redriven or purged, never both. Returns how many were deleted (0 when nothing
-- matches).
CREATE FUNCTION skiplock.purge_dead_jobs(
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

-- queue_throughput: jobs of p_queue that finished in each of the last p_minutes whole
-- minutes (the current, partial minute included), by outcome. Reads job_history through
-- job_history_finished_at_idx and dead_jobs through dead_jobs_failed_at_idx: a range
-- scan over the window, never the whole history. Takes no locks. Returns one row per
-- minute, oldest first, zeros when nothing finished.
CREATE FUNCTION skiplock.queue_throughput(
    p_queue text, p_minutes integer DEFAULT 60, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (minute timestamptz, succeeded bigint, failed bigint, cancelled bigint,
                 expired bigint)
LANGUAGE sql STABLE AS $$
    WITH finished AS (
        -- The window's start as a plain expression (not a joined row), so both scans
        -- are index range scans on the *_at index.
        SELECT date_trunc('minute', h.finished_at) AS minute, h.status::text AS status
        FROM skiplock.job_history h
        WHERE h.finished_at >= date_trunc('minute', coalesce(p_now, now()))
                               - make_interval(mins => greatest(p_minutes, 1) - 1)
          AND h.queue = p_queue
        UNION ALL
        SELECT date_trunc('minute', d.failed_at), 'failed'
        FROM skiplock.dead_jobs d
        WHERE d.failed_at >= date_trunc('minute', coalesce(p_now, now()))
                             - make_interval(mins => greatest(p_minutes, 1) - 1)
          AND d.queue = p_queue
    )
    SELECT m.minute,
           count(f.status) FILTER (WHERE f.status = 'succeeded'),
           count(f.status) FILTER (WHERE f.status = 'failed'),
           count(f.status) FILTER (WHERE f.status = 'cancelled'),
           count(f.status) FILTER (WHERE f.status = 'expired')
    FROM generate_series(
             date_trunc('minute', coalesce(p_now, now()))
                 - make_interval(mins => greatest(p_minutes, 1) - 1),
             date_trunc('minute', coalesce(p_now, now())),
             interval '1 minute') AS m(minute)
    LEFT JOIN finished f ON f.minute = m.minute
    GROUP BY m.minute
    ORDER BY m.minute
$$;

-- stop_worker: ask one worker process to stop gracefully: it stops claiming, lets its
-- running jobs finish (up to its shutdown grace) and exits, as on SIGTERM. Sent as
-- NOTIFY on channel skiplock_control with payload 'stop:<worker id>'; every worker
-- listens and only the named one acts. Delivered at commit; a worker whose LISTEN
-- connection is down at that moment misses it. Takes no locks. Returns false when no
-- registered worker has this id (nothing is sent), true otherwise.
CREATE FUNCTION skiplock.stop_worker(p_worker_id uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM skiplock.workers w WHERE w.id = p_worker_id) THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('skiplock_control', 'stop:' || p_worker_id::text);
    RETURN true;
END
$$;
