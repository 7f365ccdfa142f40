-- skiplock 0006: controlling a workflow as one unit — cancel every unfinished step, or
-- run the steps that did not succeed again, in graph order.
--
-- Both are built from the single-job transitions of 0001: archive_jobs and cancel_job
-- end the steps, retry_job brings finished ones back, and the dependency machinery
-- (job_dependencies, settle_waiting_jobs) makes a brought-back step wait for its parents
-- and pass their results again. Nothing here writes a job's state on its own.

-- A step's on_dependency_failure lives on its job only while the job is in the hot
-- table (job_history and dead_jobs do not keep it), and retry_workflow needs it after.
-- The step row records it; steps enqueued before this migration get it from their job
-- while that is still unfinished, and otherwise count as the default, 'fail'.
ALTER TABLE skiplock.workflow_steps ADD COLUMN on_dependency_failure skiplock.dependency_policy;

UPDATE skiplock.workflow_steps s SET on_dependency_failure = j.on_dependency_failure
FROM skiplock.jobs j WHERE j.id = s.job_id;

-- enqueue_workflow inserts each step row right after enqueueing its job, so the job is
-- in the hot table (its parents, enqueued in the same call, have not finished).
CREATE FUNCTION skiplock.workflow_step_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.on_dependency_failure IS NULL THEN
        NEW.on_dependency_failure := (SELECT j.on_dependency_failure FROM skiplock.jobs j
                                      WHERE j.id = NEW.job_id);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER workflow_step_inserted BEFORE INSERT ON skiplock.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION skiplock.workflow_step_inserted();

-- lock_workflow (internal): lock workflow p_id's row, so that cancel_workflow and
-- retry_workflow on one workflow run one after the other; raises no_data_found for an
-- unknown id, or when p_queue_pattern is given and none of its steps is in a matching
-- queue (a queue-limited caller must not learn which ids are taken).
CREATE FUNCTION skiplock.lock_workflow(p_id bigint, p_queue_pattern text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM skiplock.workflows w WHERE w.id = p_id FOR NO KEY UPDATE;
    IF NOT FOUND OR (p_queue_pattern IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM skiplock.workflow_jobs s
            WHERE s.workflow_id = p_id AND skiplock.queue_matches(s.queue, p_queue_pattern)))
    THEN
        RAISE EXCEPTION 'workflow % not found', p_id USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- cancel_workflow: cancel every unfinished step of workflow p_id (with p_queue_pattern,
-- only the steps in matching queues). Steps not yet running (waiting, scheduled, queued,
-- retrying) are cancelled at once, all in one archive_jobs call so that no waiting step
-- is first settled by its parent's cancellation (it would fail with DependencyFailed, or
-- run under 'run'); running steps get cancel_job's request (their workers are told on
-- skiplock_cancel and the steps end cancelled unless they finish first). Locks the
-- workflow row, then the steps' job rows in id order. Returns how many steps it
-- cancelled or asked to stop; 0 (with a NOTICE) when every step had already finished.
-- Raises no_data_found for an unknown workflow.
CREATE FUNCTION skiplock.cancel_workflow(
    p_id bigint, p_queue_pattern text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_pending bigint[];
    v_running bigint[];
    v_job bigint;
BEGIN
    PERFORM skiplock.lock_workflow(p_id, p_queue_pattern);
    SELECT coalesce(array_agg(u.id) FILTER (WHERE u.state <> 'running'), '{}'),
           coalesce(array_agg(u.id) FILTER (WHERE u.state = 'running'), '{}')
    INTO v_pending, v_running
    FROM (SELECT j.id, j.state FROM skiplock.workflow_steps s
          JOIN skiplock.jobs j ON j.id = s.job_id
          WHERE s.workflow_id = p_id AND skiplock.queue_matches(j.queue, p_queue_pattern)
          ORDER BY j.id
          FOR UPDATE OF j) u;
    IF cardinality(v_pending) > 0 THEN
        PERFORM skiplock.archive_jobs(v_pending, 'cancelled', NULL, v_now);
    END IF;
    FOREACH v_job IN ARRAY v_running LOOP
        PERFORM skiplock.cancel_job(v_job, v_now);
    END LOOP;
    IF cardinality(v_pending) + cardinality(v_running) = 0 THEN
        RAISE NOTICE 'workflow % has already finished; nothing to cancel', p_id;
    END IF;
    RETURN cardinality(v_pending) + cardinality(v_running);
END
$$;

-- retry_workflow: run again the steps of workflow p_id that did not succeed (failed,
-- cancelled or expired — among them the steps that failed or were cancelled because a
-- parent did not succeed), so that the workflow can run to completion. Each such step
-- goes back to the hot table through retry_job (same job id, attempts reset, error
-- history kept), then waits for its parents again: every parent that has not succeeded
-- is a dependency once more, and settle_waiting_jobs queues the step (writing its
-- parents' results into its args, as on the first run) when they all have, or applies
-- its on_dependency_failure if one fails again. Steps that succeeded keep their result
-- and do not run again. With p_queue_pattern only the steps in matching queues are
-- retried (a step whose parent is outside them and did not succeed follows its policy
-- at once). Locks the workflow row. Returns how many steps it retried; 0 (with a
-- NOTICE) when none needed it. Raises no_data_found for an unknown workflow, and
-- object_not_in_prerequisite_state while a step (in those queues) has not finished or
-- when a step's job record was pruned (its outcome is no longer known).
CREATE FUNCTION skiplock.retry_workflow(
    p_id bigint, p_queue_pattern text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_steps text[];
    v_retry bigint[];
    v_job bigint;
BEGIN
    PERFORM skiplock.lock_workflow(p_id, p_queue_pattern);
    SELECT array_agg(s.name ORDER BY s.position) INTO v_steps
    FROM skiplock.workflow_steps s JOIN skiplock.jobs j ON j.id = s.job_id
    WHERE s.workflow_id = p_id AND skiplock.queue_matches(j.queue, p_queue_pattern);
    IF v_steps IS NOT NULL THEN
        RAISE EXCEPTION 'workflow % has not finished (unfinished steps: %); wait for it or cancel it first',
            p_id, array_to_string(v_steps, ', ')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- A pruned step has no queue: only a caller without a pattern is told of it (a
    -- queue-limited one must not learn other queues' step names).
    SELECT array_agg(s.step ORDER BY s.position) INTO v_steps
    FROM skiplock.workflow_jobs s
    WHERE s.workflow_id = p_id AND s.status IS NULL
      AND skiplock.queue_matches(s.queue, p_queue_pattern);
    IF v_steps IS NOT NULL THEN
        RAISE EXCEPTION 'workflow % cannot be retried: the job records of steps % were pruned',
            p_id, array_to_string(v_steps, ', ')
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    v_retry := ARRAY(SELECT s.job_id FROM skiplock.workflow_jobs s
                     WHERE s.workflow_id = p_id
                       AND s.status IN ('failed', 'cancelled', 'expired')
                       AND skiplock.queue_matches(s.queue, p_queue_pattern)
                     ORDER BY s.job_id);
    IF cardinality(v_retry) = 0 THEN
        RAISE NOTICE 'workflow % has no step to retry', p_id;
        RETURN 0;
    END IF;
    FOREACH v_job IN ARRAY v_retry LOOP
        PERFORM skiplock.retry_job(v_job, v_now);
    END LOOP;

    -- retry_job brought them back queued and on their own; a step waits for its parents
    -- (all of them, in `after` order: settle_waiting_jobs reads results in that order)
    -- until settle_waiting_jobs below queues it. Nothing is committed in between, so no
    -- worker can claim one meanwhile.
    UPDATE skiplock.jobs j
    SET state = 'waiting',
        depends_on = nullif(ARRAY(SELECT p.job_id
                                  FROM unnest(s.after) WITH ORDINALITY AS a(name, i)
                                  JOIN skiplock.workflow_steps p
                                    ON p.workflow_id = s.workflow_id AND p.name = a.name
                                  ORDER BY a.i), '{}'),
        on_dependency_failure = coalesce(s.on_dependency_failure, 'fail')
    FROM skiplock.workflow_steps s
    WHERE s.job_id = j.id AND j.id = ANY (v_retry);
    INSERT INTO skiplock.job_dependencies (depends_on, job_id)
    SELECT DISTINCT d.id, j.id FROM skiplock.jobs j, unnest(j.depends_on) AS d(id)
    WHERE j.id = ANY (v_retry);
    PERFORM skiplock.settle_waiting_jobs(v_retry, v_now);
    RETURN cardinality(v_retry);
END
$$;
