"""/api/v1/jobs/{id}/webhooks: the deliveries of a job's callback (the `skiplock.webhook`
jobs that POST its outcome), newest first, each with its status, attempts and last
error; the dashboard's job page lists the same store call."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from skiplock import store
from skiplock.api.auth import principal_of
from skiplock.api.jobs import JOB_ID, job_id_of
from skiplock.api.problems import Problem
from skiplock.api.responses import JobWebhooks
from skiplock.api.routing import Answer, Operation, route
from skiplock.api.state import Conn, api_state
from skiplock.jobs import Job


async def get_job_webhooks(request: Request) -> Response:
    """GET /api/v1/jobs/{id}/webhooks → 200 {"job_id", "status", "callback_url",
    "deliveries"}; 404 for an unknown job or one outside a queue-limited token's
    queues."""
    api = api_state(request)
    job_id = job_id_of(request)
    principal = principal_of(request)

    async def read(conn: Conn) -> tuple[Job, list[store.WebhookDelivery]]:
        job = await api.app.arun(store.get_job(job_id), conn)
        # outside a queue-limited token's queues: as if it did not exist
        if job is None or (principal is not None and not principal.sees(job.queue)):
            raise Problem(404, "not found", f"job {job_id} not found")
        return job, await api.app.arun(store.webhook_deliveries(job_id), conn)

    job, deliveries = await api.db(read)
    return JSONResponse(
        {
            "job_id": job_id,
            "status": job.status,
            "callback_url": job.callback_url,
            "deliveries": [delivery.to_json() for delivery in deliveries],
        }
    )


routes = [
    route(
        "/jobs/{job_id}/webhooks",
        {
            "GET": Operation(
                get_job_webhooks,
                "get_job_webhooks",
                "The deliveries of a job's callback URL, newest first.",
                "jobs",
                {200: Answer(JobWebhooks, "The job's webhook deliveries.")},
                errors=(404, 503),
            )
        },
        name="get_job_webhooks",
        params=(JOB_ID,),
    ),
]
"""Mounted under /api/v1 by create_app, beside the jobs routes."""
