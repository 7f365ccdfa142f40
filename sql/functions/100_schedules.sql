-- Schedules: recurring jobs. SQL stores them and enqueues each fire time once; the
-- workers' scheduler parses the cron expressions and computes the fire times.

-- create_schedule: add a schedule, or with p_replace replace one of the same name (a
-- changed cron or time zone makes the workers compute next_run_at again). Raises for an
-- unknown time zone, a malformed cron expression, or an existing name without p_replace.
-- Queue, priority and max_attempts left NULL are resolved now as an enqueue resolves
-- them (_job_options): the task's published defaults, then the queue's max_attempts,
-- then the built-in values; the schedule's jobs carry what was resolved.
CREATE OR REPLACE FUNCTION skiplock.create_schedule(
    p_name text, p_cron text, p_task text, p_args jsonb DEFAULT '{}',
    p_queue text DEFAULT NULL, p_priority integer DEFAULT NULL,
    p_timezone text DEFAULT 'UTC', p_max_attempts integer DEFAULT NULL,
    p_enabled boolean DEFAULT true, p_replace boolean DEFAULT false
) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_timezone) THEN
        RAISE EXCEPTION 'unknown time zone %; use an IANA name such as Europe/Paris', p_timezone
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO skiplock.schedules AS s (name, cron, timezone, task, args, queue, priority,
                                         max_attempts, enabled)
    SELECT p_name, trim(p_cron), p_timezone, p_task, coalesce(p_args, '{}'),
           o.queue, o.priority, o.max_attempts, coalesce(p_enabled, true)
    FROM skiplock._job_options(
        jsonb_strip_nulls(jsonb_build_object('queue', p_queue, 'priority', p_priority,
                                             'max_attempts', p_max_attempts)),
        p_task) o
    ON CONFLICT (name) DO UPDATE
        SET cron = excluded.cron, timezone = excluded.timezone, task = excluded.task,
            args = excluded.args, queue = excluded.queue, priority = excluded.priority,
            max_attempts = excluded.max_attempts, enabled = excluded.enabled,
            next_run_at = CASE WHEN (s.cron, s.timezone) = (excluded.cron, excluded.timezone)
                               THEN s.next_run_at END,
            last_error = NULL, updated_at = now()
        WHERE p_replace;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'schedule % already exists', p_name USING ERRCODE = 'unique_violation';
    END IF;
END
$$;

-- enable_schedule: turn schedule p_name on; returns false for an unknown name. Enabling
-- recomputes next_run_at from now, so a schedule off for a week does not fire for the
-- week it missed.
CREATE OR REPLACE FUNCTION skiplock.enable_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.schedules SET enabled = true, next_run_at = NULL, updated_at = now()
        WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

-- disable_schedule: turn schedule p_name off (enable_schedule turns it on again); returns
-- false for an unknown name.
CREATE OR REPLACE FUNCTION skiplock.disable_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH changed AS (
        UPDATE skiplock.schedules SET enabled = false, updated_at = now()
        WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;

-- delete_schedule: remove schedule p_name; the jobs it already enqueued stay. Returns
-- false for an unknown name.
CREATE OR REPLACE FUNCTION skiplock.delete_schedule(p_name text) RETURNS boolean
LANGUAGE sql AS $$
    WITH gone AS (DELETE FROM skiplock.schedules WHERE name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM gone)
$$;

-- lock_due_schedules: the scheduler's first step, inside its transaction. Locks (SKIP
-- LOCKED, so schedulers on every worker share the work without a leader) the enabled
-- schedules that are due or have no next_run_at yet, and returns them with the database
-- time. The caller computes fire and next times and calls fire_schedule or
-- set_schedule_next_run for each before committing.
CREATE OR REPLACE FUNCTION skiplock.lock_due_schedules(p_limit integer DEFAULT 100,
                                            p_now timestamptz DEFAULT NULL)
RETURNS TABLE (name text, cron text, timezone text, next_run_at timestamptz,
               db_now timestamptz)
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    SELECT s.name, s.cron, s.timezone, s.next_run_at, coalesce(p_now, now())
    FROM skiplock.schedules s
    WHERE s.enabled AND (s.next_run_at IS NULL OR s.next_run_at <= coalesce(p_now, now()))
    ORDER BY s.next_run_at NULLS FIRST
    LIMIT p_limit
    FOR UPDATE SKIP LOCKED
$$;

-- fire_schedule: enqueue the schedule's job for fire time p_fire_at and move next_run_at
-- to p_next_run_at. The job's unique key is (schedule, fire time), held for a day, so a
-- fire time is enqueued once even if two schedulers raced past the row lock. Returns
-- the job id (the existing one if this fire time was already enqueued).
CREATE OR REPLACE FUNCTION skiplock.fire_schedule(p_name text, p_fire_at timestamptz,
                                       p_next_run_at timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_schedule skiplock.schedules;
    v_job bigint;
BEGIN
    SELECT * INTO v_schedule FROM skiplock.schedules s WHERE s.name = p_name;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_job := skiplock.enqueue(
        v_schedule.task, v_schedule.args, queue => v_schedule.queue,
        priority => v_schedule.priority, max_attempts => v_schedule.max_attempts,
        meta => jsonb_build_object('schedule', p_name, 'fire_at', p_fire_at),
        unique_key => 'schedule:' || p_name || '@' || p_fire_at::text,
        unique_for => interval '1 day');
    UPDATE skiplock.schedules s
    SET next_run_at = p_next_run_at, last_run_at = p_fire_at, last_job_id = v_job,
        last_error = NULL
    WHERE s.name = p_name;
    RETURN v_job;
END
$$;

-- run_schedule: fire schedule p_name once now, out of its cron (an operator's "run now"):
-- enqueues its job as fire_schedule does for the database's now() and keeps next_run_at
-- as it is. The row is locked first, so a scheduler working on it at the same moment
-- either finishes before (and this keeps what it set) or skips it. Returns the job id;
-- NULL for an unknown name.
CREATE OR REPLACE FUNCTION skiplock.run_schedule(p_name text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_next timestamptz;
BEGIN
    SELECT s.next_run_at INTO v_next FROM skiplock.schedules s WHERE s.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN skiplock.fire_schedule(p_name, now(), v_next);
END
$$;

-- set_schedule_next_run: record the next fire time (or, with p_error, why none could be
-- computed: the schedule is then disabled until fixed). Returns false for an unknown name.
CREATE OR REPLACE FUNCTION skiplock.set_schedule_next_run(p_name text, p_next_run_at timestamptz,
                                               p_error text DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH changed AS (
        UPDATE skiplock.schedules s
        SET next_run_at = p_next_run_at, last_error = p_error,
            enabled = s.enabled AND p_error IS NULL
        WHERE s.name = p_name RETURNING 1)
    SELECT EXISTS (SELECT FROM changed)
$$;
