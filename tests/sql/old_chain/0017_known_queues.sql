-- An insert into skiplock.jobs registers only the queues it has not seen before.
--
-- jobs_inserted (0014) ran `INSERT INTO skiplock.queues ... ON CONFLICT DO NOTHING` for
-- every statement, though the queue is almost always known: even inserting nothing, that
-- statement took ~0.09 ms of a single-job insert's ~0.39 ms (round trip included). The
-- grouping statement now also notes which queues have no row yet, and the INSERT runs
-- only for those. A queue another transaction is registering (its row not committed
-- yet) counts as new, and the INSERT waits for that transaction as before: same rows,
-- same waits.
CREATE OR REPLACE FUNCTION skiplock.jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_new text[];
    v_queues text;
BEGIN
    WITH inserted AS (
        SELECT r.queue, r.task, count(*) AS n,
               bool_or(r.state = 'queued' AND r.run_at <= now()) AS ready
        FROM new_rows r
        GROUP BY r.queue, r.task
    ), counted AS (
        INSERT INTO skiplock.job_counts (queue, task, event, n)
        SELECT i.queue, i.task, 'created', i.n FROM inserted i
    )
    SELECT array_agg(DISTINCT i.queue) FILTER (WHERE q.name IS NULL),
           string_agg(DISTINCT i.queue, ',') FILTER (WHERE i.ready)
    INTO v_new, v_queues
    FROM inserted i LEFT JOIN skiplock.queues q ON q.name = i.queue;
    IF v_new IS NOT NULL THEN
        INSERT INTO skiplock.queues (name) SELECT unnest(v_new) ON CONFLICT DO NOTHING;
    END IF;
    IF v_queues IS NOT NULL THEN
        PERFORM pg_notify('skiplock_jobs',
                          CASE WHEN octet_length(v_queues) > 4000 THEN '*' ELSE v_queues END);
    END IF;
    RETURN NULL;
END
$$;
