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
-- letters. A delivery job never gets a webhook of its own. Each delivery's
-- (job_id, delivery_id) goes into webhook_deliveries in the same statement, from the
-- ids the INSERT returns.
CREATE OR REPLACE FUNCTION skiplock._enqueue_webhooks() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = auto  -- see _jobs_finished
AS $$
BEGIN
    -- The common case: no callback here, and no INSERT (whose own triggers would fire).
    IF NOT EXISTS (SELECT 1 FROM new_rows n WHERE n.callback_url IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    WITH delivery AS (
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
              ORDER BY n.id) o
        RETURNING id AS delivery_id, (args -> 'outcome' ->> 'job_id')::bigint AS job_id)
    INSERT INTO skiplock.webhook_deliveries (job_id, delivery_id)
    SELECT d.job_id, d.delivery_id FROM delivery d;
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

-- webhook_deliveries: the delivery jobs of job p_job_id's callback, newest first, one row
-- each: its id, status and attempts (as all_jobs says them), the URL it posts to, its
-- last error's message (NULL: none yet), when it was made, when it runs next (NULL once
-- finished) and when it finished. A job retried after it finished has one delivery per
-- finish. Empty when the job has no callback URL, has not finished, or does not exist;
-- deliveries made before the schema kept these links are not listed.
-- Index probes only (webhook_deliveries' key, each job table's primary key). Read-only.
CREATE OR REPLACE FUNCTION skiplock.webhook_deliveries(p_job_id bigint)
RETURNS TABLE (delivery_id bigint, status text, attempt integer, max_attempts integer,
               url text, last_error text, created_at timestamptz, run_at timestamptz,
               finished_at timestamptz)
LANGUAGE sql STABLE AS $$
    -- = ANY (ARRAY(…)), not a join: the ids reach each of all_jobs' tables as one
    -- parameter, a primary-key probe each; a join to the view hashes all three tables.
    SELECT j.id, j.status, j.attempt, j.max_attempts, j.args ->> 'url',
           j.last_error ->> 'error', j.created_at, j.run_at, j.finished_at
    FROM skiplock.all_jobs j
    WHERE j.id = ANY (ARRAY(SELECT w.delivery_id FROM skiplock.webhook_deliveries w
                            WHERE w.job_id = p_job_id))
    ORDER BY j.id DESC
$$;

-- _webhook_deliveries_deleted (trigger): after every statement that deletes finished
-- jobs from job_history or dead_jobs (prune_job_history, delete_job,
-- purge_dead_letters, a DELETE of your own), forget the links of the jobs gone, on
-- either side: a pruned job's deliveries, a pruned delivery's job. A job moved back to
-- the hot table in the same statement (retry_job, redrive_dead_letters) keeps them.
-- Without any webhook the table is empty and the statement ends at the first probe.
CREATE OR REPLACE FUNCTION skiplock._webhook_deliveries_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM skiplock.webhook_deliveries) THEN
        RETURN NULL;
    END IF;
    DELETE FROM skiplock.webhook_deliveries w
    USING old_rows o
    WHERE w.job_id = o.id
      AND NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = o.id);
    DELETE FROM skiplock.webhook_deliveries w
    USING old_rows o
    WHERE w.delivery_id = o.id
      AND NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = o.id);
    RETURN NULL;
END
$$;

-- delivery links go with either job, once per statement
CREATE OR REPLACE TRIGGER job_history_webhook_links AFTER DELETE ON skiplock.job_history
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhook_deliveries_deleted();
CREATE OR REPLACE TRIGGER dead_jobs_webhook_links AFTER DELETE ON skiplock.dead_jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._webhook_deliveries_deleted();
