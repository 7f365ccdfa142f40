-- A stop request stays on the worker's row until it exits: stop_worker's NOTIFY wakes a
-- listening worker at once, and the worker's next heartbeat finds the request even when
-- its LISTEN connection was down or not yet listening when the NOTIFY went out.
ALTER TABLE skiplock.workers ADD COLUMN stop_requested_at timestamptz;
