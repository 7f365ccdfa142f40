-- Privileges: who may call what. Applied last, with the functions, every time they are.
--
-- Nothing is executable by PUBLIC: the API is for three roles that an operator grants
-- to login roles (`GRANT skiplock_producer TO app_user`). `skiplock migrate` creates them
-- (NOLOGIN) when they are missing and it may; otherwise it says which statements to run,
-- and this file grants to the roles that exist.
--   skiplock_producer  enqueue, enqueue_many, enqueue_workflow, insert_jobs and
--                      reserve_job_ids (the Python producer's bulk paths), the pure
--                      rules (retry_delay, queue_matches, job_duration_bounds),
--                      queue_counts (which queue_stats reads), and
--                      SELECT on the job views (all_jobs, dead_letters, queue_stats,
--                      workflow_jobs), and on the names of the published tasks (a job
--                      read by id says whether its task is published): enough to
--                      enqueue and to wait for a job's status and result (LISTEN
--                      skiplock_finished needs no grant).
--   skiplock_worker    the producer's rights, everything the worker runtime calls
--                      (claim, heartbeat, progress, job logs, complete, fail, release,
--                      rescue, expire, sweep, prune, the metrics history's sample and fold,
--                      workers_needed (an autoscaler's query), register/unregister,
--                      publish, schedules, queue settings, recorded attempts),
--                      worker_stats, and SELECT on
--                      schema_migrations and schema_functions (a worker checks the
--                      schema before it starts).
--   skiplock_admin     everything: every function, view, table and sequence; alone
--                      it manages users (create_user … find_user, record_user_login)
--                      and reads their password hashes.
-- Neither producer nor worker has any right on a table holding jobs. The functions
-- granted to them are SECURITY DEFINER: they run with the rights of the role that
-- migrated (their owner), and each pins `SET search_path = skiplock, pg_temp` so that
-- no object a caller creates can stand in for one of ours (only the owner creates in
-- skiplock; pg_temp last, pg_catalog implicitly first). SECURITY DEFINER rather than
-- grants on the tables: a table grant would let a producer write any column of any job,
-- and the contract is that every state transition goes through its function. Only
-- those functions: the admin's own (cancel, retry, queues, tokens, statistics ...) run
-- with the admin's rights on the tables, and so stay inlinable where that matters
-- (queue_throughput, summarize_workflows: a filter reaches the index). Views run with
-- their owner's rights, so SELECT on a view is all a reader needs; workflow_stats reads
-- summarize_workflows, which reads tables as its caller, so it is the admin's. The
-- internal `_`-named helpers and trigger functions are granted to nobody but the
-- admin: they run inside the functions above, as their owner. Every COPY into
-- skiplock.jobs needs INSERT on the table: the Python producer copies only where its
-- role may, and otherwise sends the same jobs through insert_jobs.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA skiplock FROM PUBLIC;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'skiplock_producer') THEN
        GRANT USAGE ON SCHEMA skiplock TO skiplock_producer;
        GRANT EXECUTE ON FUNCTION
            skiplock.enqueue, skiplock.enqueue_many, skiplock.enqueue_workflow,
            skiplock.insert_jobs, skiplock.reserve_job_ids,
            skiplock.retry_delay, skiplock.queue_matches, skiplock.job_duration_bounds,
            skiplock.queue_counts
            TO skiplock_producer;
        GRANT SELECT ON skiplock.all_jobs, skiplock.dead_letters, skiplock.queue_stats,
            skiplock.workflow_jobs TO skiplock_producer;
        GRANT SELECT (name) ON skiplock.tasks TO skiplock_producer;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'skiplock_worker') THEN
        GRANT USAGE ON SCHEMA skiplock TO skiplock_worker;
        GRANT EXECUTE ON FUNCTION
            skiplock.enqueue, skiplock.enqueue_many, skiplock.enqueue_workflow,
            skiplock.insert_jobs, skiplock.reserve_job_ids,
            skiplock.retry_delay, skiplock.queue_matches, skiplock.job_duration_bounds,
            skiplock.queue_counts, skiplock.claim_jobs, skiplock.heartbeat_jobs,
            skiplock.set_job_progress,
            skiplock.append_job_logs, skiplock.complete_jobs, skiplock.fail_jobs, skiplock.release_jobs,
            skiplock.rescue_expired_jobs, skiplock.expire_jobs, skiplock.sweep_waiting_jobs,
            skiplock.prune_job_history, skiplock.prune_unique_keys, skiplock.prune_workflows,
            skiplock.prune_audit_log, skiplock.prune_workers, skiplock.prune_metrics,
            skiplock.sample_queue_depth, skiplock.fold_metrics, skiplock.workers_needed,
            skiplock.register_worker, skiplock.unregister_worker, skiplock.recorded_attempts,
            skiplock.publish_tasks, skiplock.lock_due_schedules, skiplock.fire_schedule,
            skiplock.set_schedule_next_run, skiplock.create_schedule,
            skiplock.set_queue_limits, skiplock.set_queue_defaults, skiplock.set_queue_order,
            skiplock.configure_queue
            TO skiplock_worker;
        GRANT SELECT ON skiplock.all_jobs, skiplock.dead_letters, skiplock.queue_stats,
            skiplock.workflow_jobs, skiplock.worker_stats,
            skiplock.schema_migrations, skiplock.schema_functions TO skiplock_worker;
        GRANT SELECT (name) ON skiplock.tasks TO skiplock_worker;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'skiplock_admin') THEN
        GRANT USAGE ON SCHEMA skiplock TO skiplock_admin;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA skiplock TO skiplock_admin;
        GRANT ALL ON ALL TABLES IN SCHEMA skiplock TO skiplock_admin;
        GRANT ALL ON ALL SEQUENCES IN SCHEMA skiplock TO skiplock_admin;
    END IF;
END
$$;
