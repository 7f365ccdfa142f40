-- Metrics history (job_metrics_minutes and _hours, queue_depth_minutes and _hours):
-- per minute and per hour, by queue and task, the jobs that finished, retried, their
-- run time and how long they waited to start; per queue, the ready jobs and the oldest
-- one, sampled once a minute. The outcomes, retries and run times come from the job
-- counters (each row stamped with its minute; compact_job_counts moves them here), the
-- waits from one statement trigger on jobs below (one statement per statement that
-- deletes jobs, no read of any job table).
-- Folded and pruned by the workers' maintenance, read by window with metrics_series.

-- job_wait_bounds: the bounds in seconds of the wait histogram (how long a ready job
-- waited to start; +Inf is implied).
CREATE OR REPLACE FUNCTION skiplock.job_wait_bounds() RETURNS float8[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT '{0.01,0.05,0.1,0.25,0.5,1,2.5,5,10,30,60,300,900,3600,21600}'::float8[]
$$;

-- _bucket_counts (internal): a histogram of p_size buckets from its non-empty ones:
-- p_counts[i] samples in bucket p_buckets[i] (1-based: width_bucket + 1). NULL when
-- p_buckets is: no samples. PL/pgSQL, not SQL: its plan is kept for the session, where a
-- SQL function with a query would be planned again on every call of a trigger.
-- Not planned per call: it reads no table, and loops over at most p_size entries.
CREATE OR REPLACE FUNCTION skiplock._bucket_counts(
    p_buckets integer[], p_counts bigint[], p_size integer
) RETURNS bigint[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_counts bigint[];
BEGIN
    IF p_buckets IS NULL THEN
        RETURN NULL;
    END IF;
    v_counts := array_fill(0::bigint, ARRAY[p_size]);
    FOR i IN 1 .. cardinality(p_buckets) LOOP
        v_counts[p_buckets[i]] := v_counts[p_buckets[i]] + p_counts[i];
    END LOOP;
    RETURN v_counts;
END
$$;

-- _sum_buckets (internal): the sum, bucket by bucket, of the histograms in p_rows (a
-- two-dimensional array, one histogram a row: array_agg of a histogram column); NULL
-- for no rows. Histograms of one bounds function have one length.
-- Not planned per call: an expression over its argument, no table read.
CREATE OR REPLACE FUNCTION skiplock._sum_buckets(p_rows bigint[]) RETURNS bigint[]
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT array_agg(s.n ORDER BY s.bucket)
    FROM (SELECT (u.o - 1) % array_length(p_rows, 2) + 1 AS bucket, sum(u.v)::bigint AS n
          FROM unnest(p_rows) WITH ORDINALITY AS u(v, o) GROUP BY 1) s
$$;

-- _add_buckets (internal): two histograms added bucket by bucket; NULL is no samples.
-- Not planned per call: an expression over its arguments, no table read.
CREATE OR REPLACE FUNCTION skiplock._add_buckets(p_a bigint[], p_b bigint[])
RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_a IS NULL THEN p_b
                WHEN p_b IS NULL THEN p_a
                ELSE skiplock._sum_buckets(ARRAY[p_a, p_b]) END
$$;

-- _count_job_waits (trigger, once per statement that deletes jobs): how long the last
-- attempt of each job that leaves the hot table waited, from the time it was ready
-- (run_at, or created_at when it was enqueued with a run_at in the past) to its start,
-- in the minute the job left (the transaction's clock, as the job counters). Only jobs
-- whose attempt started count (a queued job deleted or expired waited for nothing);
-- run_at is in the hot table alone, which is why this is a trigger on jobs and not on
-- job_history. The same buckets are added to the job counters' totals (event 'wait',
-- minute NULL: kept, never moved to the history), the monotonic counters /metrics
-- exports, so a scrape never sums the history.
CREATE OR REPLACE FUNCTION skiplock._count_job_waits() RETURNS trigger
LANGUAGE plpgsql
SET plan_cache_mode = auto  -- see _jobs_finished
AS $$
DECLARE
    v_bounds float8[] := skiplock.job_wait_bounds();
BEGIN
    WITH b AS MATERIALIZED (
        SELECT date_trunc('minute', now()) AS minute, r.queue, r.task,
               width_bucket(w.waited, v_bounds) + 1 AS bucket, count(*) AS n,
               sum(w.waited) AS seconds
        FROM old_rows r
        CROSS JOIN LATERAL (
            SELECT extract(epoch FROM r.started_at - greatest(r.run_at, r.created_at))::float8
                       AS waited) w
        WHERE r.state = 'running' AND r.started_at >= greatest(r.run_at, r.created_at)
        GROUP BY 1, 2, 3, 4
    ), totals AS (
        INSERT INTO skiplock.job_counts (queue, task, event, status, le, n, seconds, minute)
        SELECT b.queue, b.task, 'wait', NULL,
               coalesce(v_bounds[b.bucket], 'Infinity'), b.n, b.seconds, NULL
        FROM b
    )
    INSERT INTO skiplock.job_metrics_minutes (minute, queue, task, wait_buckets, wait_seconds)
    SELECT b.minute, b.queue, b.task,
           skiplock._bucket_counts(array_agg(b.bucket), array_agg(b.n),
                                   cardinality(v_bounds) + 1),
           sum(b.seconds)
    FROM b
    GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER jobs_waits_counted AFTER DELETE ON skiplock.jobs
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION skiplock._count_job_waits();

-- sample_queue_depth: once a minute, for every queue with queued jobs or a queues row,
-- how many jobs are ready (queued, run_at passed) and how long the oldest has been due,
-- into queue_depth_minutes, and the hour's peaks into queue_depth_hours. Reads only
-- jobs_claim_idx: per queue, one probe per priority present and at most p_cap + 1 ready
-- entries; past the cap, `ready` is the planner's estimate and marked estimated.
-- Runs where it gets the advisory lock at once and this minute has no sample yet, so
-- every worker may call it every few seconds: one of them samples. Returns how many
-- queues it sampled, NULL when it did not sample.
CREATE OR REPLACE FUNCTION skiplock.sample_queue_depth(
    p_cap integer DEFAULT 10000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_minute timestamptz := date_trunc('minute', coalesce(p_now, now()));
    v_queue text;
    v_priority smallint;
    v_first timestamptz;
    v_oldest timestamptz;
    v_ready bigint;
    v_estimated boolean;
    v_sampled integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('skiplock.sample_queue_depth'))
       OR EXISTS (SELECT 1 FROM skiplock.queue_depth_minutes d WHERE d.minute = v_minute) THEN
        RETURN NULL;
    END IF;
    FOR v_queue IN
        -- the queues in the claim index, one probe each (a loose index scan)
        WITH RECURSIVE present AS (
            (SELECT j.queue::text AS queue FROM skiplock.jobs j
             WHERE j.state = 'queued' ORDER BY j.queue LIMIT 1)
            UNION ALL
            SELECT (SELECT j.queue FROM skiplock.jobs j
                    WHERE j.state = 'queued' AND j.queue > p.queue ORDER BY j.queue LIMIT 1)
            FROM present p WHERE p.queue IS NOT NULL
        )
        SELECT p.queue FROM present p WHERE p.queue IS NOT NULL
        UNION
        SELECT q.name FROM skiplock.queues q
    LOOP
        v_ready := 0;
        v_oldest := NULL;
        v_priority := (SELECT j.priority FROM skiplock.jobs j
                       WHERE j.state = 'queued' AND j.queue = v_queue
                       ORDER BY j.priority DESC LIMIT 1);
        WHILE v_priority IS NOT NULL AND v_ready <= p_cap LOOP
            -- within a priority the index is in run_at order: its first entry is the
            -- oldest, and the ready ones come first
            v_first := (SELECT j.run_at FROM skiplock.jobs j
                        WHERE j.state = 'queued' AND j.queue = v_queue AND j.priority = v_priority
                        ORDER BY j.run_at LIMIT 1);
            IF v_first <= v_now THEN
                v_oldest := least(v_oldest, v_first);
                v_ready := v_ready + (
                    SELECT count(*) FROM (
                        SELECT 1 FROM skiplock.jobs j
                        WHERE j.state = 'queued' AND j.queue = v_queue
                          AND j.priority = v_priority AND j.run_at <= v_now
                        -- in index order, or a LIMIT this close to the table's size
                        -- looks cheaper as a scan of the table
                        ORDER BY j.run_at
                        LIMIT p_cap + 1 - v_ready) r);
            END IF;
            v_priority := (SELECT j.priority FROM skiplock.jobs j
                           WHERE j.state = 'queued' AND j.queue = v_queue
                             AND j.priority < v_priority
                           ORDER BY j.priority DESC LIMIT 1);
        END LOOP;
        v_estimated := v_ready > p_cap;
        IF v_estimated THEN
            v_ready := greatest(p_cap, _estimated_rows(format(
                'SELECT 1 FROM skiplock.jobs WHERE state = ''queued'' AND queue = %L'
                ' AND run_at <= %L', v_queue, v_now)));
        END IF;
        INSERT INTO skiplock.queue_depth_minutes
            (minute, queue, ready, ready_estimated, oldest_ready_seconds)
        VALUES (v_minute, v_queue, v_ready, v_estimated,
                coalesce(extract(epoch FROM v_now - v_oldest)::float8, 0));
        INSERT INTO skiplock.queue_depth_hours AS h
            (hour, queue, ready, ready_estimated, oldest_ready_seconds)
        VALUES (date_trunc('hour', v_minute), v_queue, v_ready, v_estimated,
                coalesce(extract(epoch FROM v_now - v_oldest)::float8, 0))
        ON CONFLICT (hour, queue) DO UPDATE
        SET ready = greatest(h.ready, excluded.ready),
            ready_estimated = h.ready_estimated OR excluded.ready_estimated,
            oldest_ready_seconds = greatest(h.oldest_ready_seconds, excluded.oldest_ready_seconds);
        v_sampled := v_sampled + 1;
    END LOOP;
    RETURN v_sampled;
END
$$;

-- fold_metrics: compact the job counters (compact_job_counts moves the minutes counted
-- since into job_metrics_minutes), then fold the job metrics rows written since the
-- last fold into one row per (minute, queue, task) and add them to their hour. Runs
-- where it gets the advisory lock at once (else returns NULL); the writers only INSERT
-- and never wait on it. Returns how many rows it folded.
CREATE OR REPLACE FUNCTION skiplock.fold_metrics() RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_folded integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('skiplock.fold_metrics')) THEN
        RETURN NULL;
    END IF;
    PERFORM skiplock.compact_job_counts();
    WITH gone AS (
        DELETE FROM skiplock.job_metrics_minutes m WHERE NOT m.folded RETURNING m.*
    ), per_minute AS (
        SELECT g.minute, g.queue, g.task, sum(g.succeeded) AS succeeded,
               sum(g.failed) AS failed, sum(g.retried) AS retried,
               sum(g.cancelled) AS cancelled, sum(g.expired) AS expired,
               skiplock._sum_buckets(array_agg(g.run_buckets)
                                     FILTER (WHERE g.run_buckets IS NOT NULL)) AS run_buckets,
               sum(g.run_seconds) AS run_seconds,
               skiplock._sum_buckets(array_agg(g.wait_buckets)
                                     FILTER (WHERE g.wait_buckets IS NOT NULL)) AS wait_buckets,
               sum(g.wait_seconds) AS wait_seconds, count(*) AS n
        FROM gone g GROUP BY g.minute, g.queue, g.task
    ), minutes AS (
        INSERT INTO skiplock.job_metrics_minutes AS m (minute, queue, task, folded,
            succeeded, failed, retried, cancelled, expired, run_buckets, run_seconds,
            wait_buckets, wait_seconds)
        SELECT p.minute, p.queue, p.task, true, p.succeeded, p.failed, p.retried,
               p.cancelled, p.expired, p.run_buckets, p.run_seconds, p.wait_buckets,
               p.wait_seconds
        FROM per_minute p
        ON CONFLICT (minute, queue, task) WHERE folded DO UPDATE
        SET succeeded = m.succeeded + excluded.succeeded, failed = m.failed + excluded.failed,
            retried = m.retried + excluded.retried, cancelled = m.cancelled + excluded.cancelled,
            expired = m.expired + excluded.expired,
            run_buckets = skiplock._add_buckets(m.run_buckets, excluded.run_buckets),
            run_seconds = m.run_seconds + excluded.run_seconds,
            wait_buckets = skiplock._add_buckets(m.wait_buckets, excluded.wait_buckets),
            wait_seconds = m.wait_seconds + excluded.wait_seconds
    ), hours AS (
        INSERT INTO skiplock.job_metrics_hours AS h (hour, queue, task, succeeded, failed,
            retried, cancelled, expired, run_buckets, run_seconds, wait_buckets, wait_seconds)
        SELECT date_trunc('hour', p.minute), p.queue, p.task, sum(p.succeeded),
               sum(p.failed), sum(p.retried), sum(p.cancelled), sum(p.expired),
               skiplock._sum_buckets(array_agg(p.run_buckets)
                                     FILTER (WHERE p.run_buckets IS NOT NULL)), sum(p.run_seconds),
               skiplock._sum_buckets(array_agg(p.wait_buckets)
                                     FILTER (WHERE p.wait_buckets IS NOT NULL)), sum(p.wait_seconds)
        FROM per_minute p GROUP BY 1, 2, 3
        ON CONFLICT (hour, queue, task) DO UPDATE
        SET succeeded = h.succeeded + excluded.succeeded, failed = h.failed + excluded.failed,
            retried = h.retried + excluded.retried, cancelled = h.cancelled + excluded.cancelled,
            expired = h.expired + excluded.expired,
            run_buckets = skiplock._add_buckets(h.run_buckets, excluded.run_buckets),
            run_seconds = h.run_seconds + excluded.run_seconds,
            wait_buckets = skiplock._add_buckets(h.wait_buckets, excluded.wait_buckets),
            wait_seconds = h.wait_seconds + excluded.wait_seconds
    )
    SELECT coalesce(sum(p.n), 0)::integer INTO v_folded FROM per_minute p;
    RETURN v_folded;
END
$$;

-- prune_metrics: retention. Delete up to p_limit rows from each history table: minute
-- rows (folded ones; the fold takes the others) older than p_minutes_older_than, hour
-- rows older than p_hours_older_than, oldest first (NULL keeps that resolution). The
-- tables are written only by the fold, the sampler and the triggers' appends, so the
-- deletes wait on nobody. Returns the most rows deleted from one table: call again
-- while it returns p_limit.
CREATE OR REPLACE FUNCTION skiplock.prune_metrics(
    p_minutes_older_than interval DEFAULT interval '14 days',
    p_hours_older_than interval DEFAULT interval '90 days',
    p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH job_minutes AS (
        DELETE FROM skiplock.job_metrics_minutes m
        WHERE m.folded AND (m.minute, m.queue, m.task) IN (
            SELECT o.minute, o.queue, o.task FROM skiplock.job_metrics_minutes o
            WHERE o.folded AND o.minute < coalesce(p_now, now()) - p_minutes_older_than
            ORDER BY o.minute LIMIT p_limit)
        RETURNING 1
    ), job_hours AS (
        DELETE FROM skiplock.job_metrics_hours h
        WHERE (h.hour, h.queue, h.task) IN (
            SELECT o.hour, o.queue, o.task FROM skiplock.job_metrics_hours o
            WHERE o.hour < coalesce(p_now, now()) - p_hours_older_than
            ORDER BY o.hour LIMIT p_limit)
        RETURNING 1
    ), depth_minutes AS (
        DELETE FROM skiplock.queue_depth_minutes d
        WHERE (d.minute, d.queue) IN (
            SELECT o.minute, o.queue FROM skiplock.queue_depth_minutes o
            WHERE o.minute < coalesce(p_now, now()) - p_minutes_older_than
            ORDER BY o.minute LIMIT p_limit)
        RETURNING 1
    ), depth_hours AS (
        DELETE FROM skiplock.queue_depth_hours d
        WHERE (d.hour, d.queue) IN (
            SELECT o.hour, o.queue FROM skiplock.queue_depth_hours o
            WHERE o.hour < coalesce(p_now, now()) - p_hours_older_than
            ORDER BY o.hour LIMIT p_limit)
        RETURNING 1
    )
    SELECT greatest((SELECT count(*) FROM job_minutes), (SELECT count(*) FROM job_hours),
                    (SELECT count(*) FROM depth_minutes),
                    (SELECT count(*) FROM depth_hours))::integer
$$;

-- metrics_series: the history over the last p_range (at most 90 days), one row per
-- period, oldest first, the current partial period last: by minute up to 6 hours, by
-- hour beyond. Jobs of queue p_queue and task p_task (NULL: all), limited to the queues
-- under p_queue_pattern (queue_matches; NULL: all). Counts are zero where nothing
-- happened; the histograms NULL where nothing was measured; the depth columns NULL
-- where no sample was taken, and always with p_task (depth is per queue). Over several
-- queues `ready` is their sum, oldest_ready_seconds their greatest. Outcomes reach it
-- as the job counters are compacted (fold_metrics, once a minute; every scrape).
-- Reads the window of the history tables through their time indexes, never a job
-- table; locks nothing.
CREATE OR REPLACE FUNCTION skiplock.metrics_series(
    p_range interval, p_queue text DEFAULT NULL, p_task text DEFAULT NULL,
    p_queue_pattern text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS TABLE (at timestamptz, succeeded bigint, failed bigint, retried bigint,
                 cancelled bigint, expired bigint, run_buckets bigint[], run_seconds float8,
                 wait_buckets bigint[], wait_seconds float8, ready bigint,
                 ready_estimated boolean, oldest_ready_seconds float8)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
DECLARE
    v_step interval;
    v_unit text;
    v_last timestamptz;
    v_first timestamptz;
BEGIN
    IF p_range IS NULL OR p_range <= interval '0' OR p_range > interval '90 days' THEN
        RAISE EXCEPTION 'metrics_series: p_range must be above 0 and at most 90 days, got %',
            p_range USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_unit := CASE WHEN p_range <= interval '6 hours' THEN 'minute' ELSE 'hour' END;
    v_step := CASE v_unit WHEN 'minute' THEN interval '1 minute' ELSE interval '1 hour' END;
    v_last := date_trunc(v_unit, coalesce(p_now, now()));
    v_first := v_last - v_step * (ceil(extract(epoch FROM p_range)
                                       / extract(epoch FROM v_step)) - 1);
    RETURN QUERY
    WITH jobs AS (
        -- minute rows (folded and not) by minute, or hour rows plus the minute rows
        -- not yet folded into them
        SELECT m.minute AS at, m.* FROM skiplock.job_metrics_minutes m
        WHERE v_unit = 'minute' AND m.folded AND m.minute BETWEEN v_first AND v_last
        UNION ALL
        SELECT date_trunc(v_unit, m.minute), m.* FROM skiplock.job_metrics_minutes m
        WHERE NOT m.folded AND m.minute BETWEEN v_first AND v_last + v_step
        UNION ALL
        SELECT h.hour, h.hour, h.queue, h.task, true, h.succeeded, h.failed, h.retried,
               h.cancelled, h.expired, h.run_buckets, h.run_seconds, h.wait_buckets,
               h.wait_seconds
        FROM skiplock.job_metrics_hours h
        WHERE v_unit = 'hour' AND h.hour BETWEEN v_first AND v_last
    ), job_periods AS (
        SELECT j.at, sum(j.succeeded)::bigint AS succeeded, sum(j.failed)::bigint AS failed,
               sum(j.retried)::bigint AS retried, sum(j.cancelled)::bigint AS cancelled,
               sum(j.expired)::bigint AS expired,
               skiplock._sum_buckets(array_agg(j.run_buckets)
                                     FILTER (WHERE j.run_buckets IS NOT NULL)) AS run_buckets,
               sum(j.run_seconds) AS run_seconds,
               skiplock._sum_buckets(array_agg(j.wait_buckets)
                                     FILTER (WHERE j.wait_buckets IS NOT NULL)) AS wait_buckets,
               sum(j.wait_seconds) AS wait_seconds
        FROM jobs j
        WHERE (p_queue IS NULL OR j.queue = p_queue) AND (p_task IS NULL OR j.task = p_task)
          AND skiplock.queue_matches(j.queue, p_queue_pattern)
        GROUP BY j.at
    ), depth AS (
        SELECT d.minute AS at, d.queue, d.ready, d.ready_estimated, d.oldest_ready_seconds
        FROM skiplock.queue_depth_minutes d
        WHERE v_unit = 'minute' AND d.minute BETWEEN v_first AND v_last
        UNION ALL
        SELECT d.hour, d.queue, d.ready, d.ready_estimated, d.oldest_ready_seconds
        FROM skiplock.queue_depth_hours d
        WHERE v_unit = 'hour' AND d.hour BETWEEN v_first AND v_last
    ), depth_periods AS (
        SELECT d.at, sum(d.ready)::bigint AS ready, bool_or(d.ready_estimated) AS estimated,
               max(d.oldest_ready_seconds) AS oldest
        FROM depth d
        WHERE p_task IS NULL AND (p_queue IS NULL OR d.queue = p_queue)
          AND skiplock.queue_matches(d.queue, p_queue_pattern)
        GROUP BY d.at
    )
    SELECT s.at, coalesce(j.succeeded, 0), coalesce(j.failed, 0), coalesce(j.retried, 0),
           coalesce(j.cancelled, 0), coalesce(j.expired, 0), j.run_buckets,
           coalesce(j.run_seconds, 0), j.wait_buckets, coalesce(j.wait_seconds, 0),
           d.ready, d.estimated, d.oldest
    FROM generate_series(v_first, v_last, v_step) AS s(at)
    LEFT JOIN job_periods j ON j.at = s.at
    LEFT JOIN depth_periods d ON d.at = s.at
    ORDER BY s.at;
END
$$;

