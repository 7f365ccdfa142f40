-- Dependents: what happens to the jobs waiting on a job that has just finished, and the
-- sweep that catches a dependency finishing while its dependent was being enqueued.

-- _settle_dependents (internal): jobs p_ids have just finished, whatever the outcome:
-- settle the jobs waiting on them, and drop the dependencies p_ids themselves waited on
-- (a waiting job can be cancelled or expire). One cheap probe when nobody waits.
-- Not planned per call: (not by its own setting) it runs only inside _finish_jobs and
-- _move_to_dead_jobs, which are, and their setting holds for it.
CREATE OR REPLACE FUNCTION skiplock._settle_dependents(p_ids bigint[], p_now timestamptz)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_ids IS NULL OR NOT EXISTS (SELECT 1 FROM skiplock.job_dependencies) THEN
        RETURN;
    END IF;
    DELETE FROM skiplock.job_dependencies d WHERE d.job_id = ANY (p_ids);
    PERFORM skiplock._settle_waiting_jobs(
        ARRAY(SELECT DISTINCT d.job_id FROM skiplock.job_dependencies d
              WHERE d.depends_on = ANY (p_ids)),
        p_now);
END
$$;

-- _settle_waiting_jobs (internal): jobs p_ids have finished; decide, for all the jobs
-- waiting on them at once, in a fixed number of statements: what succeeded is crossed
-- off; a job whose dependency failed, was cancelled, expired or no longer exists
-- follows its on_dependency_failure ('fail' → dead letters with a DependencyFailed
-- error naming the lowest such dependency, 'cancel' → cancelled, 'run' → crossed off);
-- a job with nothing left becomes queued, with its parents' results in its args when it
-- is a workflow step that asked for them (steps and history probed by index). Jobs
-- locked by someone else are skipped (sweep_waiting_jobs comes back to them). Returns
-- nothing.
--
-- Set-based, because it runs inside _finish_jobs, planned per call: a loop of statements
-- per job would be planned again for every job.
CREATE OR REPLACE FUNCTION skiplock._settle_waiting_jobs(p_ids bigint[], p_now timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_ids bigint[];
    v_bad_jobs bigint[];
    v_ready bigint[];
    v_fail bigint[];
    v_cancel bigint[];
    v_queues text;
BEGIN
    v_ids := ARRAY(SELECT j.id FROM skiplock.jobs j
                   WHERE j.id = ANY (p_ids) AND j.state = 'waiting'
                   ORDER BY j.id
                   FOR UPDATE SKIP LOCKED);
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;

    -- cross off what succeeded (one history probe per dependency: as a join, a history
    -- with stale statistics can be scanned whole), then, for policy 'run', what finished
    -- any other way
    DELETE FROM skiplock.job_dependencies d
    WHERE d.job_id = ANY (v_ids)
      AND (SELECT h.status FROM skiplock.job_history h WHERE h.id = d.depends_on) = 'succeeded';
    DELETE FROM skiplock.job_dependencies d
    USING skiplock.jobs j
    WHERE d.job_id = ANY (v_ids) AND j.id = d.job_id AND j.on_dependency_failure = 'run'
      AND NOT EXISTS (SELECT 1 FROM skiplock.jobs x WHERE x.id = d.depends_on);

    -- what is left and no longer in the hot table did not succeed: the job gives up,
    -- its error naming the lowest such dependency and how that one ended
    WITH bad AS (
        SELECT d.job_id, min(d.depends_on) AS dependency
        FROM skiplock.job_dependencies d
        WHERE d.job_id = ANY (v_ids)
          AND NOT EXISTS (SELECT 1 FROM skiplock.jobs x WHERE x.id = d.depends_on)
        GROUP BY d.job_id
    ), failed AS (
        UPDATE skiplock.jobs j
        SET errors = j.errors || jsonb_build_array(jsonb_build_object(
                'attempt', j.attempt, 'at', v_now, 'type', 'DependencyFailed',
                'error', format('dependency %s did not succeed (%s)', b.dependency,
                                coalesce((SELECT a.status FROM skiplock.all_jobs a
                                          WHERE a.id = b.dependency LIMIT 1), 'deleted'))))
        FROM bad b
        WHERE j.id = b.job_id
        RETURNING j.id, j.on_dependency_failure
    )
    SELECT array_agg(f.id),
           array_agg(f.id) FILTER (WHERE f.on_dependency_failure = 'cancel'),
           array_agg(f.id) FILTER (WHERE f.on_dependency_failure <> 'cancel')
    INTO v_bad_jobs, v_cancel, v_fail
    FROM failed f;
    IF v_bad_jobs IS NOT NULL THEN
        DELETE FROM skiplock.job_dependencies d WHERE d.job_id = ANY (v_bad_jobs);
    END IF;

    v_ready := ARRAY(SELECT i FROM unnest(v_ids) AS i
                     WHERE i <> ALL (coalesce(v_bad_jobs, '{}'))
                       AND NOT EXISTS (SELECT 1 FROM skiplock.job_dependencies d
                                       WHERE d.job_id = i));
    IF cardinality(v_ready) > 0 THEN
        -- Parents' results into the args of steps that asked for them: the one parent's
        -- result, or all of them in depends_on (= `after`) order. A parent that did not
        -- succeed (policy 'run') contributes null.
        UPDATE skiplock.jobs j
        SET args = j.args || jsonb_build_object(
                coalesce(s.result_arg, s.results_arg),
                CASE WHEN s.result_arg IS NOT NULL
                     THEN (SELECT h.result FROM skiplock.job_history h
                           WHERE h.id = j.depends_on[1])
                     -- one index probe per parent: a join can hash the whole history
                     ELSE (SELECT coalesce(jsonb_agg((SELECT h.result FROM skiplock.job_history h
                                                      WHERE h.id = p.id) ORDER BY p.i), '[]')
                           FROM unnest(j.depends_on) WITH ORDINALITY AS p(id, i))
                END)
        FROM skiplock.workflow_steps s
        -- the ids on both sides, so the steps are probed by their job_id index rather
        -- than scanned (there is a step row for every job of every unpruned workflow)
        WHERE s.job_id = ANY (v_ready) AND j.id = ANY (v_ready) AND s.job_id = j.id
          AND (s.result_arg IS NOT NULL OR s.results_arg IS NOT NULL);

        WITH ready AS (
            UPDATE skiplock.jobs j SET state = 'queued', run_at = greatest(j.run_at, v_now)
            WHERE j.id = ANY (v_ready)
            RETURNING j.queue)
        SELECT string_agg(DISTINCT r.queue, ',') INTO v_queues FROM ready r;
        PERFORM skiplock._wake_workers(v_queues);
    END IF;
    IF v_cancel IS NOT NULL THEN
        PERFORM skiplock._finish_jobs(NULL, v_cancel, NULL, 'cancelled', NULL, v_now);
    END IF;
    IF v_fail IS NOT NULL THEN
        PERFORM skiplock._move_to_dead_jobs(v_fail, v_now);
    END IF;
END
$$;

-- sweep_waiting_jobs: the safety net for a dependency that finished while its dependent
-- was being enqueued (neither transaction saw the other). Settles up to p_limit waiting
-- jobs that still list a dependency which has left the hot table. Run by every worker's
-- maintenance; returns how many jobs it looked at.
CREATE OR REPLACE FUNCTION skiplock.sweep_waiting_jobs(p_limit integer DEFAULT 100,
                                            p_now timestamptz DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_ids bigint[];
BEGIN
    v_ids := ARRAY(
        SELECT DISTINCT d.job_id FROM skiplock.job_dependencies d
        WHERE NOT EXISTS (SELECT 1 FROM skiplock.jobs j WHERE j.id = d.depends_on)
        LIMIT p_limit);
    IF cardinality(v_ids) > 0 THEN
        PERFORM skiplock._settle_waiting_jobs(v_ids, p_now);
    END IF;
    RETURN cardinality(v_ids);
END
$$;
