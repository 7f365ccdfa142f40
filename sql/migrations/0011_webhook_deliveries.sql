-- Webhook deliveries: which `skiplock.webhook` delivery jobs a finished job's callback
-- made, written by _enqueue_webhooks in the statement that enqueues them, so a job's
-- page and GET /api/v1/jobs/{id}/webhooks find them by the job's id. A row goes when
-- either job is deleted (pruned with its history, purged from the dead letters).
CREATE TABLE skiplock.webhook_deliveries (
    job_id      bigint NOT NULL,
    delivery_id bigint NOT NULL,
    CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (job_id, delivery_id)
);

-- A pruned delivery job takes its row along: found by this index, not a scan.
CREATE INDEX webhook_deliveries_delivery_idx ON skiplock.webhook_deliveries (delivery_id);
