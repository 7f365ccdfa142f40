-- The task registry's last_seen_at follows the live workers.
--
-- publish_tasks writes last_seen_at when a worker starts; a fleet that has run for a
-- week showed a week-old "last seen" for tasks served that very second. list_tasks now
-- reports the later of the stored value and the last heartbeat of the live workers
-- serving the task, and takes p_now like the other functions that read the clock.

-- A new parameter is a new signature: drop the old one so calls stay unambiguous.
DROP FUNCTION skiplock.list_tasks(text[]);

-- list_tasks: the registered tasks (all, or those named in p_names), with the workers
-- that serve them now (registered, heartbeat within the minute before p_now, default
-- now()) and last_seen_at = the later of the published time and those workers' last
-- heartbeat. Returns no rows for names never published. Reads only; locks nothing.
CREATE FUNCTION skiplock.list_tasks(p_names text[] DEFAULT NULL, p_now timestamptz DEFAULT NULL)
RETURNS TABLE (name text, queue text, description text, args_schema jsonb,
               first_seen_at timestamptz, last_seen_at timestamptz, workers uuid[])
LANGUAGE sql STABLE AS $$
    SELECT t.name, t.queue, t.description, t.args_schema, t.first_seen_at,
           greatest(t.last_seen_at, live.last_heartbeat_at),  -- greatest skips NULL
           coalesce(live.ids, '{}')
    FROM skiplock.tasks t
    CROSS JOIN LATERAL (
        SELECT array_agg(w.id ORDER BY w.started_at, w.id) AS ids,
               max(w.last_heartbeat_at) AS last_heartbeat_at
        FROM skiplock.workers w
        WHERE w.id = ANY (t.worker_ids)
          AND w.last_heartbeat_at > coalesce(p_now, now()) - interval '1 minute'
    ) live
    WHERE p_names IS NULL OR t.name = ANY (p_names)
    ORDER BY t.name
$$;
