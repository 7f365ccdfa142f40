-- Job logs: the lines a handler logs while its job runs, stored per attempt by the
-- worker in batches, bounded per attempt, read back by job; deleted with the job.

-- _job_exists: whether a job with id p_id lives in any of the three job tables.
CREATE OR REPLACE FUNCTION skiplock._job_exists(p_id bigint) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = p_id)
        OR EXISTS (SELECT 1 FROM skiplock.job_history h WHERE h.id = p_id)
        OR EXISTS (SELECT 1 FROM skiplock.dead_jobs d WHERE d.id = p_id)
$$;

-- append_job_logs: store the log lines of many attempts of many jobs in one call. Line
-- i is (p_job_ids[i], p_attempts[i], p_ats[i], p_levels[i], p_loggers[i],
-- p_messages[i]) of worker p_worker_id, stored in this order; a level is one of debug,
-- info, warning, error, critical. An attempt, (job, attempt, worker), keeps its first
-- p_max_lines lines and p_max_bytes bytes of messages: from the first line past either
-- bound on, its lines are dropped, and one marker line (level warning, logger skiplock,
-- dropped_lines and dropped_bytes set) counts them. p_dropped adds what the caller
-- dropped itself, [{"job_id", "attempt", "lines", "bytes"}]: the worker bounds each
-- attempt before it sends and reports the rest when the attempt ends. Lines of a job
-- that no longer exists are dropped. No token is checked: a worker that lost a lease
-- may still finish the log of its own attempt. Takes no lock beyond its INSERTs; the
-- bound holds for one writer per attempt. Raises invalid_parameter_value when the
-- arrays differ in length. Returns how many lines were stored.
CREATE OR REPLACE FUNCTION skiplock.append_job_logs(
    p_worker_id uuid, p_job_ids bigint[], p_attempts integer[], p_ats timestamptz[],
    p_levels text[], p_loggers text[], p_messages text[], p_dropped jsonb DEFAULT NULL,
    p_max_lines integer DEFAULT 1000, p_max_bytes integer DEFAULT 262144
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_count integer := coalesce(cardinality(p_job_ids), 0);
    v_stored integer;
    v_dropped jsonb;
BEGIN
    IF coalesce(cardinality(p_attempts), 0) <> v_count
       OR coalesce(cardinality(p_ats), 0) <> v_count
       OR coalesce(cardinality(p_levels), 0) <> v_count
       OR coalesce(cardinality(p_loggers), 0) <> v_count
       OR coalesce(cardinality(p_messages), 0) <> v_count THEN
        RAISE EXCEPTION 'append_job_logs: the line arrays must have the same length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    WITH alive AS (
        SELECT k.id FROM (SELECT DISTINCT unnest(p_job_ids) AS id) k
        WHERE skiplock._job_exists(k.id)
    ), line AS (
        SELECT l.*
        FROM unnest(p_job_ids, p_attempts, p_ats, p_levels, p_loggers, p_messages)
             WITH ORDINALITY AS l(job_id, attempt, at, level, logger, message, n)
        WHERE l.job_id IN (SELECT a.id FROM alive a)
    ), so_far AS (
        -- what each attempt already holds: its lines, their bytes, whether it was cut
        SELECT k.job_id, k.attempt,
               count(g.seq) FILTER (WHERE g.dropped_lines IS NULL) AS lines,
               coalesce(sum(octet_length(g.message)) FILTER (WHERE g.dropped_lines IS NULL), 0)
                   AS bytes,
               coalesce(bool_or(g.dropped_lines IS NOT NULL), false) AS cut
        FROM (SELECT DISTINCT job_id, attempt FROM line) k
        LEFT JOIN skiplock.job_logs g
               ON g.job_id = k.job_id AND g.attempt = k.attempt AND g.worker_id = p_worker_id
        GROUP BY k.job_id, k.attempt
    ), judged AS (
        SELECT l.*,
               NOT s.cut
               AND s.lines + count(*) OVER w <= p_max_lines
               AND s.bytes + sum(octet_length(l.message)) OVER w <= p_max_bytes AS kept
        FROM line l JOIN so_far s USING (job_id, attempt)
        WINDOW w AS (PARTITION BY l.job_id, l.attempt ORDER BY l.n)
    ), stored AS (
        INSERT INTO skiplock.job_logs (job_id, attempt, worker_id, at, level, logger, message)
        SELECT j.job_id, j.attempt, p_worker_id, j.at, j.level, j.logger, j.message
        FROM judged j WHERE j.kept ORDER BY j.n
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM stored),
           (SELECT jsonb_agg(jsonb_build_object('job_id', d.job_id, 'attempt', d.attempt,
                                                'lines', d.lines, 'bytes', d.bytes))
            FROM (SELECT j.job_id, j.attempt, count(*) AS lines,
                         sum(octet_length(j.message)) AS bytes
                  FROM judged j WHERE NOT j.kept GROUP BY j.job_id, j.attempt) d)
    INTO v_stored, v_dropped;

    -- After the lines, in a statement of its own: the marker sorts after them.
    INSERT INTO skiplock.job_logs AS g (job_id, attempt, worker_id, at, level, logger, message,
                                        dropped_lines, dropped_bytes)
    SELECT d.job_id, d.attempt, p_worker_id, now(), 'warning', 'skiplock',
           format('%s lines (%s bytes) dropped: an attempt keeps at most %s lines and %s'
                  ' bytes of log', sum(d.lines), sum(d.bytes), p_max_lines, p_max_bytes),
           sum(d.lines), sum(d.bytes)
    FROM (SELECT * FROM jsonb_to_recordset(coalesce(v_dropped, '[]'))
                        AS r(job_id bigint, attempt integer, lines integer, bytes bigint)
          UNION ALL
          SELECT * FROM jsonb_to_recordset(coalesce(p_dropped, '[]'))
                        AS r(job_id bigint, attempt integer, lines integer, bytes bigint)) d
    WHERE d.lines > 0 AND skiplock._job_exists(d.job_id)
    GROUP BY d.job_id, d.attempt
    ORDER BY d.job_id, d.attempt
    ON CONFLICT (job_id, attempt, worker_id) WHERE dropped_lines IS NOT NULL DO UPDATE
    SET dropped_lines = g.dropped_lines + excluded.dropped_lines,
        dropped_bytes = g.dropped_bytes + excluded.dropped_bytes,
        message = format('%s lines (%s bytes) dropped: an attempt keeps at most %s lines'
                         ' and %s bytes of log', g.dropped_lines + excluded.dropped_lines,
                         g.dropped_bytes + excluded.dropped_bytes, p_max_lines, p_max_bytes);
    RETURN v_stored;
END
$$;

-- job_logs: the log lines of job p_job_id in the order they were stored (seq): those
-- after seq p_after_seq (0: from the first), of attempt p_attempt only (NULL: every
-- attempt), at most p_limit of them. An attempt's marker line (dropped_lines set) counts
-- the lines it dropped past its bound. Empty when the job logged nothing or does not
-- exist. Read-only.
CREATE OR REPLACE FUNCTION skiplock.job_logs(
    p_job_id bigint, p_attempt integer DEFAULT NULL, p_after_seq bigint DEFAULT 0,
    p_limit integer DEFAULT 1000
) RETURNS TABLE (seq bigint, attempt integer, worker_id uuid, at timestamptz, level text,
                 logger text, message text, dropped_lines integer, dropped_bytes bigint)
LANGUAGE sql STABLE AS $$
    SELECT g.seq, g.attempt, g.worker_id, g.at, g.level, g.logger, g.message,
           g.dropped_lines, g.dropped_bytes
    FROM skiplock.job_logs g
    WHERE g.job_id = p_job_id AND g.seq > p_after_seq
      AND (p_attempt IS NULL OR g.attempt = p_attempt)
    ORDER BY g.seq
    LIMIT p_limit
$$;

-- _job_logs_deleted (trigger): after every statement that deletes finished jobs from
-- job_history or dead_jobs (delete_job, prune_job_history, purge_dead_letters, a
-- DELETE of your own), delete their log lines; a job moved back to the hot table in
-- the same statement (retry_job, redrive_dead_letters) keeps them.
CREATE OR REPLACE FUNCTION skiplock._job_logs_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM skiplock.job_logs g
    USING old_rows o
    WHERE g.job_id = o.id
      AND NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = o.id);
    RETURN NULL;
END
$$;

-- logs go with the job, once per statement
CREATE OR REPLACE TRIGGER job_history_deleted AFTER DELETE ON skiplock.job_history
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._job_logs_deleted();
CREATE OR REPLACE TRIGGER dead_jobs_deleted AFTER DELETE ON skiplock.dead_jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._job_logs_deleted();
