-- The internal helpers are `_`-named, and "finishing" is one function: the old names go.
-- The function files re-create each under its new name right after this migration, in
-- the same transaction (finish_jobs and archive_jobs are now _finish_jobs, jobs_left is
-- part of it and of _move_to_dead_jobs, bury_jobs is _move_to_dead_jobs). A trigger
-- function goes with its triggers (CASCADE), which the function files put back.
DROP FUNCTION IF EXISTS skiplock.finish_jobs(uuid, bigint[], integer[],
                                             skiplock.finished_status, jsonb[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.archive_jobs(bigint[], skiplock.finished_status, jsonb[],
                                              timestamptz);
DROP FUNCTION IF EXISTS skiplock.bury_jobs(bigint[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.jobs_left(bigint[], bigint[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.release_unique_keys(bigint[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.resolve_dependents(bigint[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.settle_waiting_jobs(bigint[], timestamptz);
DROP FUNCTION IF EXISTS skiplock.lock_workflow(bigint, text);
DROP FUNCTION IF EXISTS skiplock.jobs_inserted() CASCADE;
DROP FUNCTION IF EXISTS skiplock.jobs_finished() CASCADE;
DROP FUNCTION IF EXISTS skiplock.count_finished_jobs() CASCADE;
DROP FUNCTION IF EXISTS skiplock.enqueue_webhooks() CASCADE;
DROP FUNCTION IF EXISTS skiplock.workflow_step_inserted() CASCADE;
