-- Worker health in the workers table (fault scenario 12). Python cannot stop a sync
-- handler's thread: after its job timed out or was cancelled the thread keeps running
-- and holds one of the worker's slots. The worker already stops renewing that lease; it
-- now reports how many such threads it has with every heartbeat, so operators see an
-- unhealthy worker in the workers view, the API, the CLI and /metrics, not only in its log.

ALTER TABLE skiplock.workers ADD COLUMN stuck_jobs integer NOT NULL DEFAULT 0;

-- heartbeat_jobs (latest: 0001) gains p_stuck_jobs, written in the same statement as the
-- heartbeat. Dropped and created again: a second overload with one more defaulted
-- parameter would make every existing call ambiguous. NULL leaves the count as it is
-- (callers from other languages that know nothing of it).
DROP FUNCTION skiplock.heartbeat_jobs(uuid, bigint[], integer[], interval, timestamptz);
CREATE FUNCTION skiplock.heartbeat_jobs(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[],
    p_lease interval DEFAULT interval '30 seconds', p_now timestamptz DEFAULT NULL,
    p_stuck_jobs integer DEFAULT NULL
) RETURNS TABLE (id bigint, cancel_requested boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := coalesce(p_now, now());
BEGIN
    IF p_stuck_jobs < 0 THEN
        RAISE EXCEPTION 'p_stuck_jobs must be >= 0, got %', p_stuck_jobs
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE skiplock.workers w
    SET last_heartbeat_at = v_now, stuck_jobs = coalesce(p_stuck_jobs, w.stuck_jobs)
    WHERE w.id = p_worker_id;
    RETURN QUERY
    UPDATE skiplock.jobs j SET lease_expires_at = v_now + p_lease
    FROM unnest(p_ids, p_attempts) AS u(id, attempt)
    WHERE j.id = ANY (p_ids) AND j.id = u.id AND j.attempt = u.attempt
      AND j.worker_id = p_worker_id AND j.state = 'running'
    RETURNING j.id, j.cancel_requested_at IS NOT NULL;
END
$$;
-- As in 0001: planned per call (a generic plan joins a big unnest in a nested loop).
ALTER FUNCTION skiplock.heartbeat_jobs(uuid, bigint[], integer[], interval, timestamptz, integer)
    SET plan_cache_mode = force_custom_plan;

-- worker_stats (latest: 0001) gains stuck_jobs and healthy (no stuck handler thread).
CREATE OR REPLACE VIEW skiplock.worker_stats AS
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.version, w.started_at,
       w.last_heartbeat_at,
       (SELECT count(*) FROM skiplock.jobs j WHERE j.worker_id = w.id AND j.state = 'running')
           AS running_jobs,
       w.last_heartbeat_at > now() - interval '1 minute' AS alive,
       w.stuck_jobs,
       w.stuck_jobs = 0 AS healthy
FROM skiplock.workers w;

-- recorded_attempts: which of the attempts (p_ids[i], p_attempts[i]) of p_worker_id
-- already have an outcome recorded by that worker, and the status it gave: 'succeeded'
-- (complete_jobs), or 'retrying' | 'failed' | 'cancelled' (fail_jobs; a rescue's
-- LeaseExpired entry is not the worker's own). A worker asks when a finish changed
-- nothing: a replay of its own committed finish (the connection died after COMMIT) is
-- not a lost lease. Read-only.
CREATE FUNCTION skiplock.recorded_attempts(
    p_worker_id uuid, p_ids bigint[], p_attempts integer[]
) RETURNS TABLE (id bigint, status text)
LANGUAGE sql STABLE AS $$
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
