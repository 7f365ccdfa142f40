"""The worker process: claims jobs up to its free slots and runs them, beside the loops
it is composed of (completer, leases, maintenance, scheduler, listener), until it is
told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import uuid
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool

from skiplock import store
from skiplock.app import App
from skiplock.cancelling import cancel_and_wait
from skiplock.config import with_dead_peer_detection
from skiplock.context import JobContext
from skiplock.jobs import ClaimedJob
from skiplock.version import __version__
from skiplock.webhooks import webhook_secret
from skiplock.worker.claim_bound import ClaimBound
from skiplock.worker.completer import Completer
from skiplock.worker.deadline import wait_event
from skiplock.worker.executor import JobThreads, Outcome, execute
from skiplock.worker.heap import freeze_startup_objects, unfreeze
from skiplock.worker.job_logs import JobLogWriter, capture_job_logs
from skiplock.worker.leases import Leases, Running, StopReason
from skiplock.worker.listener import Listener
from skiplock.worker.loops import LoopHealth
from skiplock.worker.maintenance import Maintenance
from skiplock.worker.outcomes import report_written, stopped_outcome
from skiplock.worker.progress import ProgressWriter
from skiplock.worker.settings import WorkerSettings
from skiplock.worker.unknown_tasks import UnknownTaskWarnings

log = logging.getLogger("skiplock.worker")

JOBS_CHANNEL = "skiplock_jobs"
CANCEL_CHANNEL = "skiplock_cancel"
# skiplock.stop_worker sends "stop:<worker id>" here; only the named worker acts.
CONTROL_CHANNEL = "skiplock_control"
# The loops a claimed job depends on: while one is stalled the worker claims nothing.
JOB_LOOPS = ("heartbeat", "completer")
STOP_WORDS = {"cancel": "cancelled", "lost": "lease lost", "shutdown": "shutdown"}


async def _configure_connection(conn: psycopg.AsyncConnection[Any]) -> None:
    # Claimed jobs' args and meta are decoded here; most are `{}`.
    set_json_loads(store.load_json, conn)


class Worker:
    """One worker process's runtime. `await worker.run()` until `worker.stop()` (or
    SIGTERM/SIGINT when signal handlers are installed).

    Jobs run at least once: a job whose worker dies, or whose outcome could not be
    recorded before its lease expired, runs again.
    """

    def __init__(self, app: App, settings: WorkerSettings | None = None, **overrides: Any) -> None:
        self.app = app
        self.settings = settings or WorkerSettings(**overrides)
        self.settings.validate()
        if self.settings.webhook_secret:
            app.webhook_secret = self.settings.webhook_secret
        self.id = uuid.uuid4()
        self._running: dict[int, Running] = {}
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self.started = asyncio.Event()
        # Completer and heartbeat lock the same running rows: one statement at a time.
        self._row_lock = asyncio.Lock()
        self._grace: float = self.settings.shutdown_grace
        self._threads = JobThreads(self.settings.concurrency, thread_name_prefix="skiplock-job")
        self._pool: AsyncConnectionPool | None = None
        self._dsn = app.dsn
        self._claim_conn: psycopg.AsyncConnection[Any] | None = None
        self._claim_bound = ClaimBound(self.settings.poll_interval)
        self._completer: Completer | None = None
        self.listener: Listener | None = None
        # Made by _open, once the loop and the pool are there:
        self._leases: Leases | None = None
        self._maintenance: Maintenance | None = None
        self._progress: ProgressWriter | None = None
        self._job_logs: JobLogWriter | None = None
        # A loop failing for longer than a lease: the leases it keeps may have lapsed.
        self.loops = LoopHealth(stall_after=self.settings.lease)
        self._claim_sent_at = 0.0
        self._paused_for: list[str] = []
        self._unknown_tasks = UnknownTaskWarnings(lambda: app.tasks)
        self.processed = 0

    # ---- control ------------------------------------------------------------------------

    def stop(self, *, graceful: bool = True) -> None:
        """Stop claiming; running jobs get `shutdown_grace` seconds (none if not graceful),
        then are cancelled and handed back to the queue."""
        if not graceful or self._stopping.is_set():
            self._grace = 0
        self._stopping.set()
        self._wake.set()
        self._slot_freed.set()

    @property
    def running_job_ids(self) -> list[int]:
        return list(self._running)

    async def run(self, *, install_signal_handlers: bool = False) -> None:
        loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        await self._open()
        assert self._completer and self._leases and self._maintenance and self._job_logs
        s = self.settings
        background = [
            asyncio.create_task(self._completer.run(), name="completer"),
            asyncio.create_task(self._job_logs.run(), name="job logs"),
            asyncio.create_task(self._leases.heartbeat_forever(), name="heartbeat"),
            asyncio.create_task(self._leases.watch_forever(), name="leases"),
            asyncio.create_task(self._maintenance.maintain_forever(), name="maintenance"),
        ]
        if s.schedule_interval > 0:
            background.append(
                asyncio.create_task(self._maintenance.schedule_forever(), name="scheduler")
            )
        if self.listener is not None:
            background += [
                asyncio.create_task(self.listener.run(), name="listener"),
                asyncio.create_task(self.listener.probe_forever(), name="probe"),
            ]
        frozen = freeze_startup_objects() if s.freeze_startup_objects else False
        self.started.set()
        log.info(
            "worker %s started: queues=%s concurrency=%d",
            self.id,
            ",".join(s.queues),
            s.concurrency,
        )
        try:
            await self._fetch_forever()
            await self._drain_running()
            await self._completer.flush()
            await self._job_logs.flush()
        finally:
            await cancel_and_wait(*background)
            await self._close()
            unfreeze(frozen)
            if install_signal_handlers:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        log.info("worker %s stopped after %d jobs", self.id, self.processed)

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._stopping.is_set():
            log.warning("second %s: stopping now, releasing running jobs", sig.name)
        else:
            log.info(
                "%s: finishing running jobs (grace %.0f s), claiming no more",
                sig.name,
                self.settings.shutdown_grace,
            )
        self.stop()

    async def _open(self) -> None:
        s = self.settings
        # A silent database (a partition, a fail-over to another address) surfaces as a
        # connection error within about one lease, not after the kernel's ~15 minutes.
        self._dsn = with_dead_peer_detection(self.app.dsn, s.lease)
        self._pool = AsyncConnectionPool(
            self._dsn,
            min_size=2,
            max_size=4,
            open=False,
            kwargs=self.app.connection_kwargs,
            configure=_configure_connection,
        )
        await self._pool.open(wait=True, timeout=30)
        self._job_logs = JobLogWriter(
            asyncio.get_running_loop(),
            self.id,
            self._call,
            self.loops,
            max_lines=s.job_log_max_lines,
            max_bytes=s.job_log_max_bytes,
            interval=s.job_log_interval,
        )
        capture_job_logs()
        self._completer = Completer(
            self._pool,
            self.id,
            self._written,
            lock=self._row_lock,
            on_drained=self._slot_freed.set,
            max_pending=max(1_000, 4 * s.concurrency),
            health=self.loops,
            before_write=self._job_logs.flush,
        )
        self._leases = Leases(
            self.id,
            s,
            self._running,
            completer=self._completer,
            threads=self._threads,
            health=self.loops,
            lock=self._row_lock,
            call=self._call,
            stop_job=self._stop_job,
            stop_requested=self._stop_requested,
        )
        self._maintenance = Maintenance(s, self._pool, self._call, self.loops, self.app.schedules)
        self._progress = ProgressWriter(asyncio.get_running_loop(), self.id, self._call, self.loops)
        listen_dsn = self.app.listen_dsn if s.listen else None
        if listen_dsn is not None:
            self.listener = Listener(
                with_dead_peer_detection(listen_dsn, s.lease),
                [JOBS_CHANNEL, CANCEL_CHANNEL, CONTROL_CHANNEL],
                self._on_notify,
                probe_channel=f"skiplock_probe_{self.id.hex}",
                probe_pool=self._pool,
                probe_interval=s.probe_interval,
                poll_interval=s.poll_interval,
                health=self.loops,
            )
        elif s.listen:
            log.warning(
                "LISTEN cannot work through a transaction-mode pooler; polling every %g s;"
                " give a direct --listen-dsn / SKIPLOCK_LISTEN_DSN for instant pickup",
                s.poll_interval,
            )
        await self._call(
            store.register_worker(
                self.id,
                host=socket.gethostname(),
                pid=os.getpid(),
                queues=s.queues,
                concurrency=s.concurrency,
                version=__version__,
                # read here, as deliveries read it: what this worker can sign right now
                signs_webhooks=webhook_secret(self.app.webhook_secret) is not None,
            )
        )
        await self._call(store.publish_tasks(self.id, self.app.published_tasks()))

    async def _close(self) -> None:
        if self._claim_conn is not None:
            await self._claim_conn.close()
            self._claim_conn = None
        if self._pool is not None:
            with contextlib.suppress(psycopg.Error):
                await self._call(store.unregister_worker(self.id))
            await self._pool.close()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        """Claim up to `limit` jobs over the fetch loop's own connection.

        Its commits do not wait for the WAL flush (synchronous_commit off, for this
        session only): a claim lost in a server crash leaves its jobs queued, to run again
        as at-least-once allows, and the completion that follows a claim commits
        synchronously, flushing the claim with it. Enqueues and finishes stay durable.
        Saving the claim's flush takes it off the path from enqueue to handler start
        (store.CLAIM_SESSION_SETTINGS); claim_jobs plans itself once per session.

        Behind a transaction-mode pooler there is no session to set (the SET would stay
        on a server connection that then serves others): the claim commits with the
        server's synchronous_commit, still in one round trip.
        """
        s = self.settings
        conn = self._claim_conn
        try:
            if conn is None or conn.closed:
                conn = await psycopg.AsyncConnection.connect(
                    self._dsn, **self.app.connection_kwargs
                )
                self._claim_conn = conn
                await _configure_connection(conn)
                if self.app.pooler != "transaction":
                    await store.set_claim_session().arun(conn)
            started = self._claim_sent_at = asyncio.get_running_loop().time()
            bounds = self._claim_bound.next(started)
            jobs: list[ClaimedJob] = await store.claim_jobs(
                self.id, s.queues, limit, timedelta(seconds=s.lease), bounds
            ).arun(conn)
            took = asyncio.get_running_loop().time() - started
            self._claim_bound.record(bounds, started, took, limit, jobs)
        except psycopg.OperationalError:
            if conn is not None:
                await conn.close()
            self._claim_conn = None
            raise
        return jobs

    async def _call(self, call: store.Call[Any], *, wait: float | None = None) -> Any:
        """Run `call` on a pooled connection; PoolTimeout past `wait` s (None: the pool's)."""
        assert self._pool is not None
        async with self._pool.connection(timeout=wait) as conn:
            return await call.arun(conn)

    # ---- fetching -----------------------------------------------------------------------

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == CANCEL_CHANNEL:
            with contextlib.suppress(ValueError):
                self._stop_job(int(payload), "cancel")
        elif channel == CONTROL_CHANNEL:
            if payload == f"stop:{self.id}":
                self._stop_requested()
        elif payload == "*" or not set(payload.split(",")).isdisjoint(self.settings.queues):
            self._wake.set()

    def _stop_requested(self) -> None:
        """skiplock.stop_worker named this worker (its NOTIFY, or a heartbeat's answer)."""
        if not self._stopping.is_set():
            log.info("worker %s: stop requested (skiplock.stop_worker)", self.id)
            self.stop()

    async def _fetch_forever(self) -> None:
        s = self.settings
        batch = s.batch_size or s.concurrency
        # Under load, wait for a few slots before claiming: fewer, bigger claims.
        min_claim = max(1, min(batch, s.concurrency) // 4)
        assert self._completer is not None
        while not self._stopping.is_set():
            if self._claims_paused():
                await self._sleep_unless_stopping(s.poll_interval)
                continue
            # A thread that outlived its job still takes a slot (see JobThreads).
            free = s.concurrency - len(self._running) - self._threads.stuck()
            if (free < min_claim and self._running) or free <= 0 or self._completer.saturated:
                self._slot_freed.clear()
                # Bounded: a missed signal costs one poll interval, never a stuck worker.
                await wait_event(self._slot_freed, s.poll_interval)
                continue
            want = min(free, batch)
            self._wake.clear()
            try:
                jobs = await self._claim(want)
                for job in jobs:
                    self._start(job)
            except Exception as exc:
                await self._sleep_unless_stopping(self.loops.failed("claim", exc))
                continue
            self.loops.succeeded("claim")
            if len(jobs) < want:
                await wait_event(self._wake, s.poll_interval)

    async def _sleep_unless_stopping(self, delay: float) -> None:
        await wait_event(self._stopping, delay)

    def _claims_paused(self) -> bool:
        """True while a loop that running jobs depend on is stalled: leases unrenewed or
        outcomes unwritten, new jobs would only run twice or pile up. (Without the
        listener the poll goes on; the scheduler and maintenance serve every worker.)"""
        stalled = [loop for loop in self.loops.stalled() if loop in JOB_LOOPS]
        if stalled and not self._paused_for:
            log.error(
                "worker %s unhealthy: %s failing for over %.0f s; claiming no jobs until"
                " it recovers",
                self.id,
                ", ".join(stalled),
                self.loops.stall_after,
            )
        elif self._paused_for and not stalled:
            log.warning("worker %s healthy again: claiming jobs", self.id)
        self._paused_for = stalled
        return bool(stalled)

    async def run_once(self) -> int:
        """Claim one batch, run it to the end and record the outcomes; returns how many
        jobs ran. For tests and skiplock.testing: no loops, no sleeps."""
        if self._pool is None:
            await self._open()
        assert self._completer is not None
        s = self.settings
        self._claim_sent_at = asyncio.get_running_loop().time()
        jobs = await self._call(
            store.claim_jobs(
                self.id, s.queues, s.batch_size or s.concurrency, timedelta(seconds=s.lease)
            )
        )
        for job in jobs:
            self._start(job)
        await asyncio.gather(*(r.handle for r in list(self._running.values()) if r.handle))
        writer = asyncio.create_task(self._completer.run())
        try:
            await self._completer.flush()
            assert self._job_logs is not None
            await self._job_logs.flush()  # of jobs that lost their lease: no outcome
        finally:
            await cancel_and_wait(writer)
        return len(jobs)

    async def close(self) -> None:
        """Release what run_once opened."""
        await self._close()
        self._pool = None

    # ---- executing ----------------------------------------------------------------------

    def _start(self, job: ClaimedJob) -> None:
        assert self._progress is not None and self._job_logs is not None
        ctx = JobContext(job, self.id, self._progress.report, self._job_logs.add)
        running = Running(job, ctx, renewed_at=self._claim_sent_at)
        if job.timeout is not None:
            # Past timeout + one lease the handler is stuck beyond cancellation: stop
            # renewing so another worker can take the job.
            running.deadline = (
                asyncio.get_running_loop().time()
                + job.timeout.total_seconds()
                + self.settings.lease
            )
        self._running[job.id] = running
        running.handle = asyncio.create_task(self._run_job(running), name=f"job-{job.id}")

    async def _run_job(self, running: Running) -> None:
        ctx = running.ctx
        if self.app.hooks["started"]:
            await self.app.emit("started", ctx, {})
        try:
            outcome: Outcome | None = await execute(
                self.app, ctx, self._threads, unknown_task_delay=self.settings.unknown_task_delay
            )
        except asyncio.CancelledError:
            ctx.cancelled.set()
            outcome = stopped_outcome(running)
        finally:
            if self._running.get(ctx.id) is running:
                del self._running[ctx.id]
            self._slot_freed.set()
            if ctx.log_state is not None:  # it logged: what it dropped goes with its outcome
                assert self._job_logs is not None
                self._job_logs.attempt_ended(ctx)
        if outcome is not None:
            assert self._completer is not None
            self._completer.add(outcome)

    def _stop_job(self, job_id: int, reason: StopReason) -> None:
        running = self._running.get(job_id)
        if running is None or running.stop_reason is not None:
            return
        running.stop_reason = reason
        running.ctx.cancelled.set()
        if running.handle is not None:
            running.handle.cancel()
        log.info("job %d %s: stopping its handler", job_id, STOP_WORDS[reason])

    async def _drain_running(self) -> None:
        handles = [r.handle for r in self._running.values() if r.handle]
        if handles and self._grace > 0:
            log.info("waiting up to %.0f s for %d running jobs", self._grace, len(handles))
            await asyncio.wait(handles, timeout=self._grace)
        for job_id in list(self._running):
            self._stop_job(job_id, "shutdown")
        await asyncio.gather(
            *(r.handle for r in self._running.values() if r.handle), return_exceptions=True
        )

    async def _written(self, written: list[tuple[Outcome, str]]) -> None:
        reported = []
        for outcome, status in written:
            if outcome.delay is not None and status == "released":
                # no handler for its task here: one warning per task, not a line per job
                self._unknown_tasks.handed_back(outcome.job, outcome.delay)
            else:
                reported.append((outcome, status))
        self.processed += len(reported)
        await report_written(self.app, reported)

    # ---- health, and one pass of a loop (tests call these instead of waiting) ----------

    @property
    def healthy(self) -> bool:
        """False while some handler's thread cannot be stopped and holds a slot, or some
        loop has failed for longer than a lease (see LoopHealth)."""
        return self._threads.stuck() == 0 and not self.loops.stalled()

    async def heartbeat_once(self, *, wait: float | None = None) -> None:
        """One heartbeat (see Leases.heartbeat_once)."""
        assert self._leases is not None
        await self._leases.heartbeat_once(wait=wait)

    @property
    def maintenance(self) -> Maintenance:
        """The maintenance passes (retention, metrics history, scheduler), to run one."""
        assert self._maintenance is not None
        return self._maintenance
