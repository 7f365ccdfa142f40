-- Queues get an order among themselves and a default attempt count. A worker serving
-- several queues takes the work of a higher-priority queue first; among queues of the
-- same priority it claims in proportion to their weights (claim_jobs). max_attempts is
-- the default for the queue's jobs that set none and whose task publishes none (NULL:
-- the built-in 20).
ALTER TABLE skiplock.queues
    ADD COLUMN priority smallint NOT NULL DEFAULT 0,
    ADD COLUMN weight integer NOT NULL DEFAULT 1,
    ADD COLUMN max_attempts integer,
    ADD CONSTRAINT queue_priority_in_range CHECK (priority BETWEEN -100 AND 100),
    ADD CONSTRAINT queue_weight_in_range CHECK (weight BETWEEN 1 AND 1000),
    ADD CONSTRAINT queue_max_attempts_positive CHECK (max_attempts IS NULL OR max_attempts >= 1);

-- New signatures, created again by the function files right after this migration:
-- claim_jobs bounds each queue on its own (p_run_after and p_priority_floor per queue),
-- set_queue_defaults takes max_attempts, release_jobs a delay.
DROP FUNCTION IF EXISTS skiplock.claim_jobs(uuid, text[], integer, interval, timestamptz,
                                            timestamptz);
DROP FUNCTION IF EXISTS skiplock.set_queue_defaults(text, jsonb, interval);
DROP FUNCTION IF EXISTS skiplock.release_jobs(uuid, bigint[], integer[], timestamptz);
