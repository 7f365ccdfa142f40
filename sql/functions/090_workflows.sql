-- Workflows: a DAG of jobs enqueued in one call and followed as one unit, cancelled or
-- retried as one. Built from the single-job transitions (enqueue, _finish_jobs,
-- cancel_job, retry_job) and the dependency machinery (job_dependencies,
-- _settle_waiting_jobs); nothing here writes a job's state on its own.

-- workflow_jobs: every workflow step with its job's status, wherever the job lives
-- (all_jobs). A step whose job was pruned from the history shows no status.
CREATE OR REPLACE VIEW skiplock.workflow_jobs AS
SELECT s.workflow_id, s.name AS step, s.position, s.job_id, s.after, a.task, a.queue,
       a.status, a.attempt, a.max_attempts, a.created_at, a.started_at, a.finished_at,
       a.result, a.last_error ->> 'error' AS last_error
FROM skiplock.workflow_steps s
-- A LATERAL lookup that cannot be flattened (LIMIT: a job lives in one table), so the
-- id reaches each of all_jobs' three tables as an index probe; a plain join would hash
-- the whole history.
LEFT JOIN LATERAL (SELECT * FROM skiplock.all_jobs a WHERE a.id = s.job_id LIMIT 1) a ON true;

-- _workflow_step_inserted (trigger): a new step row records its job's
-- on_dependency_failure, which the job keeps only while it is in the hot table and
-- retry_workflow needs after. enqueue_workflow inserts each step row right after
-- enqueueing its job, so the job is in the hot table (its parents, enqueued in the same
-- call, have not finished).
CREATE OR REPLACE FUNCTION skiplock._workflow_step_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.on_dependency_failure IS NULL THEN
        NEW.on_dependency_failure := (SELECT j.on_dependency_failure FROM skiplock.jobs j
                                      WHERE j.id = NEW.job_id);
    END IF;
    RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER workflow_step_inserted BEFORE INSERT ON skiplock.workflow_steps
    FOR EACH ROW EXECUTE FUNCTION skiplock._workflow_step_inserted();

-- enqueue_workflow: enqueue a whole DAG in one call, in the caller's transaction; returns
-- the workflow id. p_workflow is
--   {"name": text?, "meta": {...}?, "steps": [step, ...]}
-- and each step is an object with enqueue's options plus how it joins the graph:
--   {"name": "b", "task": "t", "args": {...}, "after": ["a", ...],
--    "result_arg": "x" | "results_arg": "xs", "on_dependency_failure": "fail|cancel|run",
--    "queue", "priority", "run_at", "delay" (s), "max_attempts", "retry_policy",
--    "timeout" (s), "tags", "meta", "expires_at", "expires_in" (s)}
-- A step waits for the steps named in `after` (on_dependency_failure decides what it
-- does when one does not succeed, as for enqueue). `result_arg` (one parent only) puts
-- the parent's result in that argument; `results_arg` puts the list of all parents'
-- results, in `after` order. Each job's meta gets "workflow_id" and "workflow_step".
-- Everything is checked before anything is written: a malformed document, unknown
-- fields, wrong types, duplicate or unknown step names and cycles raise
-- invalid_parameter_value naming the step and field; an error from enqueue itself (a
-- bad task or queue name) is raised with the step's name in front. Takes no locks
-- beyond enqueue's. Unique keys are not accepted in steps.
CREATE OR REPLACE FUNCTION skiplock.enqueue_workflow(p_workflow jsonb) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
DECLARE
    v_steps jsonb := p_workflow -> 'steps';
    v_step jsonb;
    v_index integer;
    v_name text;
    v_field text;
    v_kind text;
    v_after text[];
    v_names text[] := '{}';    -- declaration order
    v_by_name jsonb;           -- step name → step object
    v_position jsonb;          -- step name → declaration position (1-based)
    v_order text[];            -- parents before children
    v_stuck text[];            -- steps on (or after) a cycle
    v_job_ids bigint[];        -- job id by declaration position
    v_workflow bigint;
    v_job bigint;
BEGIN
    IF jsonb_typeof(p_workflow) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'a workflow must be a JSON object {"name", "meta", "steps"}, got %',
            coalesce(jsonb_typeof(p_workflow), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT k INTO v_field FROM jsonb_object_keys(p_workflow) k
    WHERE k NOT IN ('name', 'meta', 'steps') ORDER BY k LIMIT 1;
    IF v_field IS NOT NULL THEN
        RAISE EXCEPTION 'unknown workflow field "%"; expected name, meta, steps', v_field
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(p_workflow -> 'name') NOT IN ('string', 'null') THEN
        RAISE EXCEPTION 'workflow name must be a string' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(p_workflow -> 'meta') NOT IN ('object', 'null') THEN
        RAISE EXCEPTION 'workflow meta must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(v_steps) IS DISTINCT FROM 'array' OR jsonb_array_length(v_steps) = 0 THEN
        RAISE EXCEPTION 'workflow steps must be a non-empty JSON array'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Each step on its own: shape, field names and JSON types.
    FOR v_step, v_index IN SELECT s, n FROM jsonb_array_elements(v_steps) WITH ORDINALITY AS e(s, n)
    LOOP
        IF jsonb_typeof(v_step) <> 'object' THEN
            RAISE EXCEPTION 'step % must be a JSON object', v_index
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_name := v_step ->> 'name';
        IF jsonb_typeof(v_step -> 'name') IS DISTINCT FROM 'string'
           OR v_name !~ '^[A-Za-z0-9_.:/-]{1,100}$' THEN
            RAISE EXCEPTION 'step %: name must be 1 to 100 of A-Z a-z 0-9 _ . : / -', v_index
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name = ANY (v_names) THEN
            RAISE EXCEPTION 'step names must be unique: "%" is used twice', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT k INTO v_field FROM jsonb_object_keys(v_step) k
        WHERE k NOT IN ('name', 'task', 'args', 'after', 'result_arg', 'results_arg',
                        'on_dependency_failure', 'queue', 'priority', 'run_at', 'delay',
                        'max_attempts', 'retry_policy', 'timeout', 'tags', 'meta',
                        'expires_at', 'expires_in')
        ORDER BY k LIMIT 1;
        IF v_field IS NOT NULL THEN
            RAISE EXCEPTION 'step "%": unknown field "%"%', v_name, v_field,
                CASE WHEN v_field IN ('unique_key', 'unique_scope', 'unique_for', 'depends_on')
                     THEN '; workflow steps take "after" instead of depends_on and no unique keys'
                     ELSE '' END
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF jsonb_typeof(v_step -> 'task') IS DISTINCT FROM 'string' THEN
            RAISE EXCEPTION 'step "%": task is required (a string)', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- null counts as "not given", as for the API's enqueue
        SELECT f.field, f.kind INTO v_field, v_kind
        FROM (VALUES ('args', 'object'), ('after', 'array'), ('result_arg', 'string'),
                     ('results_arg', 'string'), ('on_dependency_failure', 'string'),
                     ('queue', 'string'), ('priority', 'number'), ('run_at', 'string'),
                     ('delay', 'number'), ('max_attempts', 'number'),
                     ('retry_policy', 'object'), ('timeout', 'number'), ('tags', 'array'),
                     ('meta', 'object'), ('expires_at', 'string'), ('expires_in', 'number'))
             AS f(field, kind)
        WHERE jsonb_typeof(v_step -> f.field) NOT IN (f.kind, 'null')
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'step "%": % must be a JSON %', v_name, v_field, v_kind
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        -- strict: a missing or null list has no elements (lax would see one null)
        IF jsonb_path_exists(v_step, 'strict $.after[*] ? (@.type() != "string")', silent => true)
           OR jsonb_path_exists(v_step, 'strict $.tags[*] ? (@.type() != "string")', silent => true) THEN
            RAISE EXCEPTION 'step "%": after and tags must be lists of strings', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT f INTO v_field FROM unnest(ARRAY['result_arg', 'results_arg']) f
        WHERE NOT coalesce(length(v_step ->> f) BETWEEN 1 AND 200, true) LIMIT 1;
        IF v_field IS NOT NULL THEN
            RAISE EXCEPTION 'step "%": % must be an argument name of 1 to 200 characters',
                v_name, v_field USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF coalesce(v_step ->> 'on_dependency_failure', 'fail') NOT IN ('fail', 'cancel', 'run') THEN
            RAISE EXCEPTION 'step "%": on_dependency_failure must be fail, cancel or run, got "%"',
                v_name, v_step ->> 'on_dependency_failure' USING ERRCODE = 'invalid_parameter_value';
        END IF;
        v_names := v_names || v_name;
    END LOOP;
    SELECT jsonb_object_agg(e.s ->> 'name', e.s), jsonb_object_agg(e.s ->> 'name', e.n)
    INTO v_by_name, v_position
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY AS e(s, n);

    -- The graph: parents exist, appear once, and results are asked for sensibly.
    FOREACH v_name IN ARRAY v_names LOOP
        v_step := v_by_name -> v_name;
        v_after := ARRAY(SELECT jsonb_array_elements_text(
                             coalesce(nullif(v_step -> 'after', 'null'), '[]')));
        SELECT a INTO v_field FROM unnest(v_after) a WHERE NOT v_by_name ? a LIMIT 1;
        IF v_field IS NOT NULL THEN
            RAISE EXCEPTION 'step "%": after names an unknown step "%"', v_name, v_field
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_name = ANY (v_after) THEN
            RAISE EXCEPTION 'step "%": a step cannot come after itself', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF cardinality(v_after) <> (SELECT count(DISTINCT a) FROM unnest(v_after) a) THEN
            RAISE EXCEPTION 'step "%": after names a step twice', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_step ->> 'result_arg' IS NOT NULL AND v_step ->> 'results_arg' IS NOT NULL THEN
            RAISE EXCEPTION 'step "%": give result_arg or results_arg, not both', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_step ->> 'result_arg' IS NOT NULL AND cardinality(v_after) <> 1 THEN
            RAISE EXCEPTION 'step "%": result_arg needs exactly one step in after (it has %); use results_arg for a list',
                v_name, cardinality(v_after) USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_step ->> 'results_arg' IS NOT NULL AND cardinality(v_after) = 0 THEN
            RAISE EXCEPTION 'step "%": results_arg needs at least one step in after', v_name
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END LOOP;

    -- Parents before children: order by each step's depth, the longest path to it from a
    -- step without parents. No path in a DAG has as many edges as there are steps, so the
    -- recursion stops there; a step on a cycle, or after one, gets no depth or that one.
    -- One statement: placing steps level by level, a loop per level, is slow on long chains.
    WITH RECURSIVE edge AS (
        SELECT p AS parent, s.key AS child
        FROM jsonb_each(v_by_name) AS s,
             jsonb_array_elements_text(coalesce(nullif(s.value -> 'after', 'null'), '[]')) AS p
    ), depth (name, d) AS (
        SELECT n, 0 FROM unnest(v_names) AS n
        WHERE NOT EXISTS (SELECT 1 FROM edge e WHERE e.child = n)
        UNION
        SELECT e.child, depth.d + 1 FROM depth JOIN edge e ON e.parent = depth.name
        WHERE depth.d < cardinality(v_names)
    ), deepest AS (
        SELECT depth.name, max(depth.d) AS d FROM depth GROUP BY depth.name
    )
    SELECT array_agg(u.n ORDER BY x.d, u.i) FILTER (WHERE x.d < cardinality(v_names)),
           array_agg(u.n ORDER BY u.i) FILTER (WHERE x.d IS NULL OR x.d >= cardinality(v_names))
    INTO v_order, v_stuck
    FROM unnest(v_names) WITH ORDINALITY AS u(n, i)
    LEFT JOIN deepest x ON x.name = u.n;
    IF v_stuck IS NOT NULL THEN
        RAISE EXCEPTION 'workflow steps form a cycle: % cannot start',
            array_to_string(v_stuck, ', ') USING ERRCODE = 'invalid_parameter_value';
    END IF;

    INSERT INTO skiplock.workflows (name, meta)
    VALUES (p_workflow ->> 'name', coalesce(nullif(p_workflow -> 'meta', 'null'), '{}'))
    RETURNING id INTO v_workflow;

    -- One block (one subtransaction, however many steps) to put the step's name on any
    -- error enqueue raises; the whole call is undone either way.
    BEGIN
        v_job_ids := array_fill(NULL::bigint, ARRAY[cardinality(v_names)]);
        FOREACH v_name IN ARRAY v_order LOOP
            v_step := v_by_name -> v_name;
            v_index := (v_position ->> v_name)::integer;
            v_after := ARRAY(SELECT jsonb_array_elements_text(
                                 coalesce(nullif(v_step -> 'after', 'null'), '[]')));
            v_job := skiplock.enqueue(
                v_step ->> 'task',
                coalesce(nullif(v_step -> 'args', 'null'), '{}'),
                queue => v_step ->> 'queue',
                priority => (v_step ->> 'priority')::integer,
                run_at => (v_step ->> 'run_at')::timestamptz,
                delay => make_interval(secs => (v_step ->> 'delay')::float8),
                max_attempts => (v_step ->> 'max_attempts')::integer,
                retry_policy => nullif(v_step -> 'retry_policy', 'null'),
                timeout => make_interval(secs => (v_step ->> 'timeout')::float8),
                tags => ARRAY(SELECT jsonb_array_elements_text(
                                  coalesce(nullif(v_step -> 'tags', 'null'), '[]'))),
                meta => coalesce(nullif(v_step -> 'meta', 'null'), '{}')
                        || jsonb_build_object('workflow_id', v_workflow, 'workflow_step', v_name),
                expires_at => (v_step ->> 'expires_at')::timestamptz,
                expires_in => make_interval(secs => (v_step ->> 'expires_in')::float8),
                depends_on => ARRAY(SELECT v_job_ids[(v_position ->> p.name)::integer]
                                    FROM unnest(v_after) WITH ORDINALITY AS p(name, i)
                                    ORDER BY p.i),
                on_dependency_failure => coalesce(v_step ->> 'on_dependency_failure', 'fail'));
            v_job_ids[v_index] := v_job;
            INSERT INTO skiplock.workflow_steps (workflow_id, name, position, job_id, after,
                                                 result_arg, results_arg)
            VALUES (v_workflow, v_name, v_index, v_job, v_after,
                    v_step ->> 'result_arg', v_step ->> 'results_arg');
        END LOOP;
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'step "%": %', v_name, SQLERRM USING ERRCODE = SQLSTATE;
    END;
    RETURN v_workflow;
END
$$;

-- _lock_workflow (internal): lock workflow p_id's row, so that cancel_workflow and
-- retry_workflow on one workflow run one after the other; raises no_data_found for an
-- unknown id, or when p_queue_pattern is given and none of its steps is in a matching
-- queue (a queue-limited caller must not learn which ids are taken).
CREATE OR REPLACE FUNCTION skiplock._lock_workflow(p_id bigint, p_queue_pattern text) RETURNS void
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
-- retrying) are cancelled at once, all in one _finish_jobs call so that no waiting step
-- is first settled by its parent's cancellation (it would fail with DependencyFailed, or
-- run under 'run'); running steps get cancel_job's request (their workers are told on
-- skiplock_cancel and the steps end cancelled unless they finish first). Locks the
-- workflow row, then the steps' job rows in id order. Returns how many steps it
-- cancelled or asked to stop; 0 (with a NOTICE) when every step had already finished.
-- Raises no_data_found for an unknown workflow.
CREATE OR REPLACE FUNCTION skiplock.cancel_workflow(
    p_id bigint, p_queue_pattern text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_pending bigint[];
    v_running bigint[];
    v_job bigint;
BEGIN
    PERFORM skiplock._lock_workflow(p_id, p_queue_pattern);
    SELECT coalesce(array_agg(u.id) FILTER (WHERE u.state <> 'running'), '{}'),
           coalesce(array_agg(u.id) FILTER (WHERE u.state = 'running'), '{}')
    INTO v_pending, v_running
    FROM (SELECT j.id, j.state FROM skiplock.workflow_steps s
          JOIN skiplock.jobs j ON j.id = s.job_id
          WHERE s.workflow_id = p_id AND skiplock.queue_matches(j.queue, p_queue_pattern)
          ORDER BY j.id
          FOR UPDATE OF j) u;
    IF cardinality(v_pending) > 0 THEN
        PERFORM skiplock._finish_jobs(NULL, v_pending, NULL, 'cancelled', NULL, v_now);
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
-- is a dependency once more, and _settle_waiting_jobs queues the step (writing its
-- parents' results into its args, as on the first run) when they all have, or applies
-- its on_dependency_failure if one fails again. Steps that succeeded keep their result
-- and do not run again. With p_queue_pattern only the steps in matching queues are
-- retried (a step whose parent is outside them and did not succeed follows its policy
-- at once). Locks the workflow row. Returns how many steps it retried; 0 (with a
-- NOTICE) when none needed it. Raises no_data_found for an unknown workflow, and
-- object_not_in_prerequisite_state while a step (in those queues) has not finished or
-- when a step's job record was pruned (its outcome is no longer known).
CREATE OR REPLACE FUNCTION skiplock.retry_workflow(
    p_id bigint, p_queue_pattern text DEFAULT NULL, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := coalesce(p_now, now());
    v_steps text[];
    v_retry bigint[];
    v_job bigint;
BEGIN
    PERFORM skiplock._lock_workflow(p_id, p_queue_pattern);
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
    -- (all of them, in `after` order: _settle_waiting_jobs reads results in that order)
    -- until _settle_waiting_jobs below queues it. Nothing is committed in between, so no
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
    PERFORM skiplock._settle_waiting_jobs(v_retry, v_now);
    RETURN cardinality(v_retry);
END
$$;

-- summarize_workflows: per workflow, its steps counted by status and its overall state:
--   running    some step has not finished yet
--   succeeded  every step succeeded
--   failed     all finished, and some step failed or expired
--   cancelled  all finished, none failed, some cancelled
-- With p_queue_pattern (a token's queue glob, see queue_matches) only the steps in
-- matching queues are counted, and workflows with none are left out. Reads, no locks.
-- LANGUAGE sql and STABLE so that it is inlined: a filter on id reaches the workflows
-- table, and each workflow's steps are counted only for the rows asked for.
CREATE OR REPLACE FUNCTION skiplock.summarize_workflows(p_queue_pattern text DEFAULT NULL)
RETURNS TABLE (id bigint, name text, meta jsonb, created_at timestamptz, state text,
               steps bigint, waiting bigint, scheduled bigint, queued bigint,
               running bigint, retrying bigint, succeeded bigint, failed bigint,
               cancelled bigint, expired bigint, finished_at timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT w.id, w.name, w.meta, w.created_at,
           CASE WHEN c.waiting + c.scheduled + c.queued + c.running + c.retrying > 0
                    THEN 'running'
                WHEN c.failed + c.expired > 0 THEN 'failed'
                WHEN c.cancelled > 0 THEN 'cancelled'
                ELSE 'succeeded' END,
           c.steps, c.waiting, c.scheduled, c.queued, c.running, c.retrying, c.succeeded,
           c.failed, c.cancelled, c.expired,
           CASE WHEN c.waiting + c.scheduled + c.queued + c.running + c.retrying = 0
                THEN c.last_finished END
    FROM skiplock.workflows w
    CROSS JOIN LATERAL (
        SELECT count(*) AS steps,
               count(*) FILTER (WHERE j.status = 'waiting') AS waiting,
               count(*) FILTER (WHERE j.status = 'scheduled') AS scheduled,
               count(*) FILTER (WHERE j.status = 'queued') AS queued,
               count(*) FILTER (WHERE j.status = 'running') AS running,
               count(*) FILTER (WHERE j.status = 'retrying') AS retrying,
               count(*) FILTER (WHERE j.status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE j.status = 'failed') AS failed,
               count(*) FILTER (WHERE j.status = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE j.status = 'expired') AS expired,
               max(j.finished_at) AS last_finished
        FROM skiplock.workflow_jobs j
        WHERE j.workflow_id = w.id AND skiplock.queue_matches(j.queue, p_queue_pattern)
    ) c
    WHERE c.steps > 0
$$;

-- workflow_stats: how every workflow is doing (summarize_workflows over all of them):
-- SELECT * FROM skiplock.workflow_stats WHERE id = 1.
CREATE OR REPLACE VIEW skiplock.workflow_stats AS
SELECT * FROM skiplock.summarize_workflows(NULL);

-- prune_workflows: retention for workflow records. Deletes up to p_limit workflows (with
-- their step rows) created more than p_older_than ago whose steps have all left the hot
-- table (finished); the steps' jobs stay in job_history and dead_jobs for their own
-- retention. Rows are taken with SKIP LOCKED, so it is safe from several places at once;
-- call again while it returns p_limit. Returns how many workflows were deleted.
CREATE OR REPLACE FUNCTION skiplock.prune_workflows(
    p_older_than interval, p_limit integer DEFAULT 1000, p_now timestamptz DEFAULT NULL
) RETURNS integer
LANGUAGE sql
SECURITY DEFINER
SET search_path = skiplock, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM skiplock.workflows w
        WHERE w.id = ANY (ARRAY(
            SELECT o.id FROM skiplock.workflows o
            WHERE o.created_at < coalesce(p_now, now()) - p_older_than
              AND NOT EXISTS (SELECT 1 FROM skiplock.workflow_steps s
                              JOIN skiplock.jobs j ON j.id = s.job_id
                              WHERE s.workflow_id = o.id)
            ORDER BY o.id
            LIMIT p_limit
            FOR UPDATE SKIP LOCKED))
        RETURNING 1)
    SELECT count(*)::integer FROM gone
$$;
