-- Worker health covers its background loops. A worker whose heartbeat, completer,
-- maintenance, scheduler, listener or fetch loop has failed for longer than a lease
-- reports that loop's name with its heartbeats and claims nothing until it recovers; a
-- worker whose heartbeats stop altogether (the heartbeat itself failing) is unhealthy
-- once its last heartbeat is older than the lease it renews with.

ALTER TABLE skiplock.workers
    ADD COLUMN stalled_loops text[] NOT NULL DEFAULT '{}',
    -- the lease of its latest heartbeat; NULL until the first one
    ADD COLUMN lease interval;

-- heartbeat_jobs (latest: 0013) gains p_stalled_loops and records p_lease on the worker.
-- Dropped and created again: a second overload with one more defaulted parameter would
-- make every existing call ambiguous. NULL leaves the list as it is (callers from other
-- languages that know nothing of it).
DROP FUNCTION skiplock.heartbeat_jobs(uuid, bigint[], integer[], interval, timestamptz, integer);
CREATE FUNCTION skiplock.heartbeat_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[],
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL,
    p_stuck_jobs integer DEFAULT NULL, p_stalled_loops text[] DEFAULT NULL
) RETURNS TABLE (id bigint, cancel_requested boolean)
LANGUAGE plpgsql
-- planned per call (a generic plan joins a big unnest in a nested loop)
SET plan_cache_mode = force_custom_plan
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
END
$$;

-- worker_stats (latest: 0013): healthy also needs no stalled loop and a heartbeat within
-- the worker's lease; stalled_loops names the loops that have failed for over a lease.
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
       w.stalled_loops
FROM skiplock.workers w;
