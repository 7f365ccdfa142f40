-- Result webhooks: when a job carrying a callback_url reaches a final state, a delivery
-- job of the built-in task `skiplock.webhook` is enqueued in the same transaction.
-- Statement triggers on the two tables finished jobs land in (job_history, dead_jobs)
-- cover every way a job can finish, whatever function moved it. A finish without
-- callback URLs pays one probe of the statement's transition table; nothing is
-- inserted then, so the jobs' own insert triggers do not fire.

-- _enqueue_webhooks (trigger): for the finished jobs of one statement that carry a
-- callback URL, enqueue one `skiplock.webhook` delivery job each, in the job's own
-- queue, with args {"url", "outcome"}. The outcome is what the receiver gets:
-- {"job_id", "task", "queue", "status", "attempts", "result", "error", "finished_at"}
-- (error: the last error entry, or null). Deliveries retry up to 10 times with
-- exponential backoff from 5 s (about 40 minutes in all), then rest in the dead
-- letters. A delivery job never gets a webhook of its own.
CREATE OR REPLACE FUNCTION skiplock._enqueue_webhooks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The common case: no callback here, and no INSERT (whose own triggers would fire).
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.callback_url IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    INSERT INTO skiplock.jobs (task, args, queue, max_attempts, retry_policy)
    SELECT 'skiplock.webhook',
           jsonb_build_object('url', o.callback_url, 'outcome', jsonb_build_object(
               'job_id', o.id, 'task', o.task, 'queue', o.queue, 'status', o.status,
               'attempts', o.attempt, 'result', o.result, 'error', o.error,
               'finished_at', o.finished_at)),
           o.queue, 10, '{"kind": "exponential", "base": 5, "max_delay": 3600}'
    FROM (SELECT n.id, n.task, n.queue, n.attempt, n.callback_url, n.errors -> -1 AS error,
                 CASE WHEN TG_TABLE_NAME = 'dead_jobs' THEN 'failed'
                      ELSE to_jsonb(n) ->> 'status' END AS status,
                 to_jsonb(n) -> 'result' AS result,
                 coalesce(to_jsonb(n) -> 'finished_at', to_jsonb(n) -> 'failed_at')
                     AS finished_at
          FROM new_rows n
          WHERE n.callback_url IS NOT NULL AND n.task <> 'skiplock.webhook'
          ORDER BY n.id) o;
    RETURN NULL;
END
$$;

-- webhook deliveries for finished jobs, once per statement
CREATE OR REPLACE TRIGGER job_history_webhooks AFTER INSERT ON skiplock.job_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._enqueue_webhooks();
CREATE OR REPLACE TRIGGER dead_jobs_webhooks AFTER INSERT ON skiplock.dead_jobs
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._enqueue_webhooks();
