-- Job logs: the lines a job's handler logged, per attempt, kept as long as the job is
-- (deleted with it, pruned with its history row). An attempt is (attempt, worker_id),
-- the claim's fencing token. seq orders a job's lines across its attempts and is the
-- cursor readers page with. A line with dropped_lines set is the attempt's marker: it
-- counts the lines (and their bytes) dropped past the attempt's bound.
CREATE TABLE skiplock.job_logs (
    job_id bigint NOT NULL,
    seq bigint GENERATED ALWAYS AS IDENTITY,
    attempt integer NOT NULL,
    worker_id uuid NOT NULL,
    at timestamptz NOT NULL,
    level text NOT NULL,
    logger text NOT NULL,
    message text NOT NULL,
    dropped_lines integer,
    dropped_bytes bigint,
    CONSTRAINT job_logs_pkey PRIMARY KEY (job_id, seq),
    CONSTRAINT job_log_level_known
        CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical')),
    CONSTRAINT job_log_marker_counts_both
        CHECK ((dropped_lines IS NULL) = (dropped_bytes IS NULL))
);

-- One marker per attempt: append_job_logs adds to it with ON CONFLICT.
CREATE UNIQUE INDEX job_logs_marker_idx ON skiplock.job_logs (job_id, attempt, worker_id)
    WHERE dropped_lines IS NOT NULL;
