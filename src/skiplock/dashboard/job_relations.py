"""What a job's page shows beside the job itself: the jobs it waits on and those that
wait on it, its webhook deliveries (the store calls the API makes), and a link to its
trace built from the operator's URL template."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from skiplock import store
from skiplock.api.state import Conn
from skiplock.dashboard.pages import Viewer, dashboard_of
from skiplock.jobs import Job
from skiplock.tracing import TRACE_META_KEY

# The most jobs listed on each side of a job's dependencies: a fan-out of thousands
# would make the page as long as a list, which the jobs list does better.
LINKS_SHOWN = 100
TRACE_PLACEHOLDERS = frozenset({"{trace_id}", "{span_id}"})
# W3C trace context: version-traceid-parentid-flags, lowercase hex.
TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def check_trace_url(template: str) -> str:
    """`template` when it is an http(s) URL with a host, holding `{trace_id}` and
    perhaps `{span_id}` and no other placeholder; ValueError saying why otherwise."""
    placeholders = set(re.findall(r"\{[^{}]*\}", template))
    unknown = sorted(placeholders - TRACE_PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder {unknown[0]}: use {{trace_id}} and {{span_id}}")
    if "{trace_id}" not in placeholders:
        raise ValueError(f"must contain {{trace_id}}, got {template!r}")
    url = urlsplit(fill(template, "0" * 32, "0" * 16))
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"must be an http or https URL with a host, got {template!r}")
    return template


def fill(template: str, trace_id: str, span_id: str) -> str:
    # plain replacement, not str.format: a template cannot reach anything but the ids
    return template.replace("{trace_id}", trace_id).replace("{span_id}", span_id)


@dataclass(frozen=True)
class TraceLink:
    """The trace a job belongs to (from its meta's traceparent) and, when the dashboard
    has a trace URL template, the address of that trace in the tracing UI."""

    trace_id: str
    span_id: str
    url: str | None


def trace_link(meta: Mapping[str, Any], template: str | None) -> TraceLink | None:
    """The job's trace, None when its meta carries no valid traceparent."""
    trace = meta.get(TRACE_META_KEY)
    traceparent = trace.get("traceparent") if isinstance(trace, dict) else None
    if not isinstance(traceparent, str):
        return None
    found = TRACEPARENT.fullmatch(traceparent.strip())
    if found is None or set(found[1]) == {"0"} or set(found[2]) == {"0"}:
        return None  # all zeros: "no trace" in the W3C format
    trace_id, span_id = found[1], found[2]
    url = fill(template, trace_id, span_id) if template else None
    return TraceLink(trace_id, span_id, url)


async def job_relations(request: Request, who: Viewer, job: Job) -> dict[str, Any]:
    """The job page's context for its dependencies, deliveries and trace: two store
    calls in one transaction. Linked jobs in queues the viewer does not see are left
    out, as the jobs list leaves them out."""
    dashboard = dashboard_of(request)
    api = dashboard.api
    upstream = (job.depends_on or [])[:LINKS_SHOWN]

    async def read(conn: Conn) -> tuple[list[store.LinkedJob], list[store.WebhookDelivery]]:
        links = store.dependency_links(job.id, upstream, limit=LINKS_SHOWN + 1)
        return await api.app.arun(links, conn), await api.app.arun(
            store.webhook_deliveries(job.id), conn
        )

    links, deliveries = await api.db(read)
    seen = [link for link in links if link.queue is None or who.principal.sees(link.queue)]
    dependents = [link for link in seen if link.side == "dependent"]
    return {
        "depends_on": [link for link in seen if link.side == "depends_on"],
        "dependents": dependents[:LINKS_SHOWN],
        "links_cut": len(dependents) > LINKS_SHOWN or len(job.depends_on or []) > LINKS_SHOWN,
        "links_shown": LINKS_SHOWN,
        "deliveries": deliveries,
        "trace": trace_link(job.meta, dashboard.trace_url),
    }
