-- Which workers can sign webhook deliveries. A worker without a webhook secret sends a
-- job's callback_url delivery straight to the dead letters, so the API wants to know,
-- before it accepts a callback_url, whether the workers serving the job's queue can
-- sign. Each worker says so when it registers; NULL: it did not say (a worker of an
-- older version, or one registered from another language), which is not taken as "no".

ALTER TABLE skiplock.workers ADD COLUMN signs_webhooks boolean;

-- register_worker (latest: 0001) gains p_signs_webhooks. Dropped and created again, as
-- 0013 did for heartbeat_jobs: CREATE OR REPLACE cannot add a parameter, and a second
-- overload with one more defaulted parameter would make every existing call ambiguous.
-- It had no plan_cache_mode setting, and has none now. Registering the same id again
-- still only refreshes its heartbeat time.
DROP FUNCTION skiplock.register_worker(uuid, text, integer, text[], integer, text);
CREATE FUNCTION skiplock.register_worker(
    p_worker_id uuid, p_host text, p_pid integer, p_queues text[], p_concurrency integer,
    p_version text, p_signs_webhooks boolean DEFAULT NULL
) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO skiplock.workers (id, host, pid, queues, concurrency, version, signs_webhooks)
    VALUES (p_worker_id, p_host, p_pid, p_queues, p_concurrency, p_version, p_signs_webhooks)
    ON CONFLICT (id) DO UPDATE SET last_heartbeat_at = now()
$$;

-- worker_stats (latest: 0018) gains signs_webhooks.
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
       w.stalled_loops,
       w.signs_webhooks
FROM skiplock.workers w;
