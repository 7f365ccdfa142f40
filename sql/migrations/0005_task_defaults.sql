-- A published task carries its default job options, and a job's queue, priority and
-- max_attempts have no column default: NULL there means "left out", and the statement
-- trigger on skiplock.jobs fills it (and the row's other unset options) from the task's
-- published defaults, then the built-in values. Nothing reads a NULL: the trigger runs
-- at the end of the inserting statement, before anyone else can see the row.
ALTER TABLE skiplock.tasks
    ADD COLUMN defaults jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT task_defaults_is_object CHECK (jsonb_typeof(defaults) = 'object');

ALTER TABLE skiplock.jobs
    ALTER COLUMN queue DROP DEFAULT, ALTER COLUMN queue DROP NOT NULL,
    ALTER COLUMN priority DROP DEFAULT, ALTER COLUMN priority DROP NOT NULL,
    ALTER COLUMN max_attempts DROP DEFAULT, ALTER COLUMN max_attempts DROP NOT NULL;

-- list_tasks returns the defaults too: a new row type, so the function files create it
-- again right after this migration, in the same transaction.
DROP FUNCTION IF EXISTS skiplock.list_tasks(text[], timestamptz);
