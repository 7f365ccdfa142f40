-- One word per concept: what failed for good is a dead letter (the view dead_letters,
-- /dead-letters, `skiplock dead-letters`). The two functions that act on them take that
-- name; the function files create them right after this migration, in the same
-- transaction.
DROP FUNCTION IF EXISTS skiplock.redrive_dead_jobs(text, text, integer, timestamptz);
DROP FUNCTION IF EXISTS skiplock.purge_dead_jobs(text, text, interval, timestamptz);
