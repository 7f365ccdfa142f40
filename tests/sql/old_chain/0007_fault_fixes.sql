-- Fixes for breaches found by the fault-injection suite (tests/faults).

-- Scenario 10: jsonb stores documents that clients cannot read back. PostgreSQL accepts
-- a few thousand levels of nesting and numbers of up to 131,072 digits, but Python's
-- json (what every worker decodes claimed args with) stops at ~1,000 levels and at
-- 4,300-digit integers: such a row made every claim that picked it fail, for the whole
-- batch. Job args and meta must now nest at most 200 levels, whoever inserts them.
-- (Integers of more than 4,300 digits are still stored: numeric storage is compact
-- whatever the magnitude, so there is no cheap gate, and walking every document cost
-- ~25% of enqueue_many's time. Python and HTTP producers refuse them.)

-- Nesting, on the domains: a document under 800 bytes cannot nest 200 levels, so the
-- walk runs only for bigger ones (no measurable cost on a 10,000-job enqueue_many).
-- NOT VALID: rows already stored are not re-checked (a deployment must not fail on them).
ALTER DOMAIN skiplock.job_args
    ADD CONSTRAINT args_nest_at_most_200_levels
    CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'))
    NOT VALID;
ALTER DOMAIN skiplock.job_meta
    ADD CONSTRAINT meta_nest_at_most_200_levels
    CHECK (pg_column_size(VALUE) < 800 OR NOT jsonb_path_exists(VALUE, '$.**{201}'))
    NOT VALID;
