-- Workers: the live worker processes (a new UUID per process start, never a reused
-- name), registered, pruned and asked to stop here; their heartbeats are in
-- 040_claim.sql.

-- register_worker: add worker process p_worker_id to the workers table, saying whether
-- it can sign webhook deliveries (p_signs_webhooks; NULL: it did not say). Registering
-- the same id again only refreshes its heartbeat time. Takes no lock beyond the
-- INSERT's. Returns nothing.
-- Not planned per call: it runs once per worker start, with its few queue names.
CREATE OR REPLACE FUNCTION skiplock.register_worker(
    p_worker_id uuid, p_host text, p_pid integer, p_queues text[], p_concurrency integer,
    p_version text, p_signs_webhooks boolean DEFAULT NULL
) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    INSERT INTO skiplock.workers (id, host, pid, queues, concurrency, version, signs_webhooks)
    VALUES (p_worker_id, p_host, p_pid, p_queues, p_concurrency, p_version, p_signs_webhooks)
    ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
$$;

-- unregister_worker: remove worker p_worker_id (a clean shutdown); nothing when it is
-- unknown. Its running jobs, if any, are rescued by lease expiry, not here.
CREATE OR REPLACE FUNCTION skiplock.unregister_worker(p_worker_id uuid) RETURNS void
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    DELETE FROM skiplock.workers WHERE id = p_worker_id
$$;

-- recorded_attempts: which of the attempts (p_ids[i], p_attempts[i]) of p_worker_id
-- already have an outcome recorded by that worker, and the status it gave: 'succeeded'
-- (complete_jobs), or 'retrying' | 'failed' | 'cancelled' (fail_jobs; a rescue's
-- LeaseExpired entry is not the worker's own). A worker asks when a finish changed
-- nothing: a replay of its own committed finish (the connection died after COMMIT) is
-- not a lost lease. Read-only.
CREATE OR REPLACE FUNCTION skiplock.recorded_attempts(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[]
) RETURNS TABLE (id bigint, status text)
LANGUAGE sql STABLE
SET plan_cache_mode = force_custom_plan
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT a.id,
           CASE WHEN a.status = 'succeeded' AND a.attempt = u.attempt
                     AND a.worker_id = p_worker_id THEN 'succeeded'
                WHEN a.status IN ('failed', 'cancelled') AND a.attempt = u.attempt THEN a.status
                ELSE 'retrying' END
    FROM skiplock.all_jobs a
    JOIN unnest(p_ids, p_attempts) AS u(id, attempt) ON a.id = u.id
    WHERE a.id = ANY (p_ids)
      AND ((a.status = 'succeeded' AND a.attempt = u.attempt AND a.worker_id = p_worker_id)
           OR EXISTS (SELECT 1 FROM jsonb_array_elements(a.errors) AS e(entry)
                      WHERE e.entry->>'worker_id' = p_worker_id::text
                        AND e.entry->>'attempt' = u.attempt::text
                        AND e.entry->>'type' IS DISTINCT FROM 'LeaseExpired'))
$$;

-- prune_workers: forget workers not heard from in p_older_than (their jobs, if any, are
-- rescued by lease expiry, not here). Returns how many were removed.
CREATE OR REPLACE FUNCTION skiplock.prune_workers(p_older_than interval DEFAULT interval '1 hour',
                                       p_now timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM skiplock.workers
        WHERE last_heartbeat_at < coalesce(p_now, now()) - p_older_than
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;

-- stop_worker: ask one worker process to stop gracefully: it stops claiming, lets its
-- running jobs finish (up to its shutdown grace) and exits, as on SIGTERM. The request is
-- recorded on the worker's row (stop_requested_at), which its next heartbeat reads, and
-- sent as NOTIFY on channel skiplock_control with payload 'stop:<worker id>' (every
-- worker listens and only the named one acts) so that a listening worker acts at once.
-- Returns false when no registered worker has this id (nothing is sent), true otherwise.
CREATE OR REPLACE FUNCTION skiplock.stop_worker(p_worker_id uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE skiplock.workers w SET stop_requested_at = coalesce(w.stop_requested_at, now())
    WHERE w.id = p_worker_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('skiplock_control', 'stop:' || p_worker_id::text);
    RETURN true;
END
$$;