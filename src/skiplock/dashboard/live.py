"""Live updates of the dashboard's pages: server-sent events fed by the API process's
one LISTEN connection (api.notifications).

LiveHub hears skiplock_jobs (which names queues that got ready jobs) and
skiplock_finished (which names jobs that finished) and wakes the streams whose page a
notification may concern. A woken stream re-reads what its page shows (one job's row, or
the counts of the queues it lists) and sends an event only when that changed, at most one
every MIN_GAP seconds: a burst of changes costs a viewer a few events, not one each.
The listener hands notifications on in batches (api.notifications.GATHER), so what they
cost the process is bounded by time, not by the rate of jobs.

No notification tells of a claim (queued -> running) or of a job's progress, so a stream
whose page shows unfinished jobs also re-reads at a floor (JOB_FLOOR, LIST_FLOOR); a page
with nothing unfinished only wakes for notifications, and every HEARTBEAT seconds, when it
re-reads, sends a comment so proxies keep the connection, and checks the login still
stands as it was. NOTIFY is a hint here as everywhere: while the hub is not listening, every stream
re-reads at the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from skiplock import store
from skiplock.api.fields import QUEUE_NAME
from skiplock.api.jobs import parse_job_id
from skiplock.api.notifications import Notifications
from skiplock.api.problems import problem_response
from skiplock.dashboard.pages import LoginRequired, Viewer, dashboard_of, principal_of, viewer
from skiplock.jobs import STATUSES
from skiplock.waiter import FINISHED_CHANNEL, finished_ids

log = logging.getLogger("skiplock.dashboard")

# Reads of one stream are at least this far apart: at most 2.5 events a second.
MIN_GAP = 0.4
# Re-read floors of a page that shows unfinished jobs: claims and progress notify nobody.
JOB_FLOOR = 1.0
LIST_FLOOR = 2.0
# A comment after this long without an event; a quiet page re-reads this often too.
HEARTBEAT = 15.0
# A stream ends after this long and the browser reconnects (after RETRY_MS), so an open
# tab never holds up the server's shutdown for longer.
STREAM_SECONDS = 60.0
RETRY_MS = 1000
UNFINISHED = ("waiting", "scheduled", "queued", "running", "retrying")
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


@dataclass(eq=False)
class Watch:
    """What one stream's page shows, as far as notifications go: the queues it lists
    (`wants`), or one job; `changed` is set when a notification may concern it."""

    wants: Callable[[str], bool]
    job_id: int | None = None
    # Whether the last read showed unfinished jobs: only then can a job finish unseen
    # (a quiet page learns of new jobs from skiplock_jobs first).
    active: bool = True
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def hears_queues(self, names: list[str] | None) -> bool:
        """Whether ready jobs in `names` (None: any queue) may concern this page."""
        return names is None or any(self.wants(name) for name in names)

    def hears_finished(self, ids: frozenset[int] | None) -> bool:
        """Whether jobs `ids` (None: any job) finishing may concern this page."""
        if self.job_id is not None:
            return ids is None or self.job_id in ids
        return self.active


class LiveHub:
    """The streams of this API process, woken by its listener, which opens with the
    first viewer (or the first long-poll)."""

    def __init__(self, notifications: Notifications) -> None:
        self.notifications = notifications
        self.watches: set[Watch] = set()
        notifications.subscribe(self)

    @property
    def listening(self) -> asyncio.Event:
        return self.notifications.listening

    @contextlib.contextmanager
    def watching(self, watch: Watch) -> Iterator[Watch]:
        self.watches.add(watch)
        self.notifications.start()
        try:
            yield watch
        finally:
            self.watches.discard(watch)

    @property
    def prompt(self) -> bool:
        return False  # streams re-read at most every MIN_GAP anyway: batches suffice

    def heard(self, channel: str, payload: str) -> None:
        # the payload is parsed once, however many watch
        if channel == FINISHED_CHANNEL:
            ids = finished_ids(payload)
            woken = [w for w in self.watches if w.hears_finished(ids)]
        else:
            names = None if payload == "*" else payload.split(",")
            woken = [w for w in self.watches if w.hears_queues(names)]
        for watch in woken:
            watch.changed.set()

    def missed(self) -> None:
        # the streams re-read: what happened meanwhile notified nobody
        for watch in self.watches:
            watch.changed.set()


@dataclass
class View:
    """What a page shows, read again: `read` returns the event's data, `active` whether
    it shows unfinished jobs, `floor` how often an active page re-reads."""

    event: str
    watch: Watch
    read: Callable[[], Awaitable[dict[str, Any] | None]]
    active: Callable[[dict[str, Any]], bool]
    floor: float


class BadPage(Exception):
    """The events of a page nobody may have: answered as problem+json."""

    def __init__(self, status: int, error: str, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.field = status, error, detail, field


def counts_view(request: Request, who: Viewer, queue: str | None, *, workers: bool = False) -> View:
    """Overview, queues and jobs list: the counts by status of the queues the page lists
    (one queue, or all the viewer sees), and with `workers` the overview's figures of the
    workers for a login that sees them (a worker that comes or goes notifies nobody: a quiet page
    shows it at its next heartbeat)."""
    api = dashboard_of(request).api
    principal = who.principal

    def wants(name: str) -> bool:
        return (queue is None or name == queue) and principal.sees(name)

    async def read() -> dict[str, Any]:
        rows = [row for row in await api.run(store.queue_stats()) if wants(row["queue"])]
        data: dict[str, Any] = {
            "counts": {s: sum(row[s] for row in rows) for s in STATUSES},
            "queues": {row["queue"]: row for row in rows},
        }
        if workers and principal.queue_pattern is None:
            alive = [w for w in await api.run(store.list_workers()) if w["alive"]]
            data["workers"] = {
                "alive": len(alive),
                "healthy": sum(1 for w in alive if w["healthy"]),
                "running_jobs": sum(w["running_jobs"] for w in alive),
            }
        return data

    def active(data: dict[str, Any]) -> bool:
        return any(data["counts"][s] for s in UNFINISHED)

    return View("changed", Watch(wants), read, active, LIST_FLOOR)


def workers_view(request: Request) -> View:
    """The workers page: every worker's row; heartbeats notify nobody, so it re-reads at
    the floor."""
    api = dashboard_of(request).api

    async def read() -> dict[str, Any]:
        return {"workers": await api.run(store.list_workers())}

    return View("changed", Watch(lambda _: True), read, lambda _: True, LIST_FLOOR)


async def job_view(request: Request, who: Viewer, raw: str) -> View:
    """A job's page: its status, attempt, progress and the last line of its log."""
    api = dashboard_of(request).api
    job_id = parse_job_id(raw)
    job = None if job_id is None else await api.run(store.get_job(job_id))
    if job_id is None or job is None or not who.principal.sees(job.queue):
        raise BadPage(404, "not_found", f"job {raw} not found")
    queue = job.queue
    # The last log line seen: each read asks only for the lines after it.
    log_seq = 0

    async def read() -> dict[str, Any] | None:
        nonlocal log_seq
        job = await api.run(store.get_job(job_id))
        if job is None:
            return None
        while lines := await api.run(store.job_logs(job_id, after=log_seq)):
            log_seq = lines[-1].seq
        return {
            "id": job.id,
            "status": job.status,
            "attempt": job.attempt,
            "max_attempts": job.max_attempts,
            "progress": job.progress,
            "log_seq": log_seq,
        }

    def active(data: dict[str, Any]) -> bool:
        return data["status"] in UNFINISHED

    return View("job", Watch(lambda name: name == queue, job_id), read, active, JOB_FLOOR)


async def view_of(request: Request, who: Viewer, page: str) -> View:
    """The view of a dashboard page given as its path below the dashboard and its query
    (`/jobs/5`, `/jobs?queue=emails`, `/`, `/queues`, `/queues/emails`, `/workers`,
    `/dead-letters`)."""
    parts = urlsplit(page)
    path = parts.path.rstrip("/") or "/"
    if path in ("/", "/queues"):
        return counts_view(request, who, None, workers=path == "/")
    if path in ("/workers", "/dead-letters") and who.principal.queue_pattern is not None:
        # as their pages are: not per queue, so closed to a queue-limited login
        raise BadPage(403, "forbidden", f"{path} is not shown to a login limited to queues")
    if path == "/workers":
        return workers_view(request)
    if path in ("/jobs", "/dead-letters"):
        # a list changes when the counts of its queue (or of every queue) do
        queue = QueryParams(parts.query).get("queue", "").strip() or None
        if queue is not None and not QUEUE_NAME.fullmatch(queue):
            raise BadPage(422, "invalid_field", "queue must be a valid queue name", "page")
        return counts_view(request, who, queue)
    if path.startswith("/jobs/") and path.count("/") == 2:
        return await job_view(request, who, path.removeprefix("/jobs/"))
    if path.startswith("/queues/") and path.count("/") == 2:
        queue = unquote(path.removeprefix("/queues/"))
        if not QUEUE_NAME.fullmatch(queue) or not who.principal.sees(queue):
            raise BadPage(404, "not_found", f"queue {queue} not found")
        return counts_view(request, who, queue)
    raise BadPage(422, "invalid_field", f"no live updates for {path}", "page")


def fingerprint(data: dict[str, Any]) -> str:
    text = json.dumps(data, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def message(event: str, event_id: str, data: dict[str, Any]) -> str:
    body = json.dumps(data, default=str, separators=(",", ":"))
    return f"event: {event}\nid: {event_id}\ndata: {body}\n\n"


def summary(view: View, data: dict[str, Any]) -> dict[str, Any]:
    """What an event carries: a job's fragment, or a list's new counts."""
    if view.event == "job":
        return data
    if "counts" not in data:  # the workers page
        return {"workers": len(data["workers"])}
    summed = {"counts": data["counts"]}
    if "workers" in data:
        summed["workers"] = data["workers"]
    return summed


async def stream(
    hub: LiveHub,
    view: View,
    still_allowed: Callable[[], Awaitable[bool]],
    last_id: str | None,
) -> AsyncIterator[str]:
    """The events of one viewer until STREAM_SECONDS have passed, the job is gone or the
    login no longer stands. `last_id`: the last event the browser got (Last-Event-ID),
    so a reconnect sends nothing when nothing changed."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MS}\n\n"
    watch = view.watch
    with hub.watching(watch):
        started = last_sent = loop.time()
        while True:
            read_at = loop.time()
            watch.changed.clear()
            try:
                data = await view.read()
            except Exception as exc:  # the database away: try again at the floor
                log.debug("dashboard stream: no read (%s)", exc)
            else:
                if data is None:
                    return
                watch.active = view.active(data)
                event_id = fingerprint(data)
                if event_id != last_id:
                    yield message(view.event, event_id, summary(view, data))
                    last_id, last_sent = event_id, loop.time()
            now = loop.time()
            if now - last_sent >= HEARTBEAT:
                if not await still_allowed():
                    return
                yield ": heartbeat\n\n"
                last_sent = now
            remaining = STREAM_SECONDS - (now - started)
            if remaining <= 0:
                return
            floor = view.floor if watch.active or not hub.listening.is_set() else HEARTBEAT
            wait = min(floor, HEARTBEAT - (now - last_sent), remaining)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watch.changed.wait(), max(wait, 0.0))
            # coalesce: what changes until MIN_GAP after the last read comes in one read
            await asyncio.sleep(max(0.0, read_at + MIN_GAP - loop.time()))


async def events(request: Request) -> Response:
    """GET /dashboard/events?page=/jobs/5: the server-sent events of that page."""
    try:
        who = await viewer(request)
    except LoginRequired:
        return problem_response(401, "unauthorized", "log in to the dashboard first")
    page = request.query_params.get("page")
    if not page or not page.startswith("/"):
        return problem_response(
            422, "invalid_field", "page must be a dashboard path such as /jobs/5", field="page"
        )
    try:
        view = await view_of(request, who, page)
    except BadPage as exc:
        return problem_response(exc.status, exc.error, exc.detail, field=exc.field)
    dashboard = dashboard_of(request)
    hub: LiveHub = request.app.state.live

    async def still_allowed() -> bool:
        """The login still stands, with the scope and queues the stream was opened with
        (changed, the browser reconnects under the new ones)."""
        try:
            return await principal_of(dashboard, who.session) == who.principal
        except Exception:  # the database away: the next heartbeat asks again
            return True

    body = stream(hub, view, still_allowed, request.headers.get("last-event-id"))
    return StreamingResponse(body, media_type="text/event-stream", headers=HEADERS)


routes = [Route("/events", events, name="events")]
