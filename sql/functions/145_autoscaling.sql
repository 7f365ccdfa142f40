-- Autoscaling: how many worker processes a queue needs, for an autoscaler that polls a
-- SQL query (KEDA's PostgreSQL scaler, a cron script). Cheap enough to run every few
-- seconds: it reads index entries up to a cap, never the whole hot table.

-- workers_needed: how many workers of p_slots_per_worker slots (their concurrency)
-- queue p_queue needs to run its ready jobs (queued, run_at passed) and its running
-- jobs at once: ceil((ready + running) / p_slots_per_worker); 0 when it has none. A
-- paused queue needs workers only for the jobs still running; a queue with max_running
-- never needs more than that many slots. Reads jobs_claim_idx (per priority present,
-- one probe and at most p_cap + 1 ready entries, as sample_queue_depth) and
-- jobs_running_idx (the running set, at most p_cap + 1 of this queue's): past the cap
-- it answers for p_cap jobs of that kind, a floor, so an autoscaler still scales to
-- its maximum. Locks nothing. An unknown queue needs 0 workers; p_slots_per_worker
-- below 1 is an invalid_parameter_value error.
CREATE OR REPLACE FUNCTION skiplock.workers_needed(
    p_queue text, p_slots_per_worker integer, p_cap integer DEFAULT 10000,
    p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_priority smallint;
    v_ready bigint := 0;
    v_running bigint;
    v_paused boolean;
    v_max_running integer;
BEGIN
    IF p_slots_per_worker IS NULL OR p_slots_per_worker < 1 THEN
        RAISE EXCEPTION 'workers_needed: p_slots_per_worker must be >= 1, got %',
            coalesce(p_slots_per_worker::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_cap IS NULL OR p_cap < 1 THEN
        RAISE EXCEPTION 'workers_needed: p_cap must be >= 1, got %',
            coalesce(p_cap::text, 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT q.paused, q.max_running INTO v_paused, v_max_running
    FROM skiplock.queues q WHERE q.name = p_queue;
    v_running := (SELECT count(*) FROM (
                      SELECT 1 FROM skiplock.jobs j
                      WHERE j.state = 'running' AND j.queue = p_queue
                      LIMIT p_cap + 1) r);
    IF NOT coalesce(v_paused, false) THEN
        v_priority := (SELECT j.priority FROM skiplock.jobs j
                       WHERE j.state = 'queued' AND j.queue = p_queue
                       ORDER BY j.priority DESC LIMIT 1);
        WHILE v_priority IS NOT NULL AND v_ready <= p_cap LOOP
            -- within a priority the index is in run_at order: the ready entries first
            v_ready := v_ready + (
                SELECT count(*) FROM (
                    SELECT 1 FROM skiplock.jobs j
                    WHERE j.state = 'queued' AND j.queue = p_queue
                      AND j.priority = v_priority AND j.run_at <= v_now
                    ORDER BY j.run_at
                    LIMIT p_cap + 1 - v_ready) r);
            v_priority := (SELECT j.priority FROM skiplock.jobs j
                           WHERE j.state = 'queued' AND j.queue = p_queue
                             AND j.priority < v_priority
                           ORDER BY j.priority DESC LIMIT 1);
        END LOOP;
    END IF;
    RETURN ceil(least(least(v_ready, p_cap) + least(v_running, p_cap),
                      coalesce(v_max_running, 2147483647))::numeric
                / p_slots_per_worker)::integer;
END
$$;
