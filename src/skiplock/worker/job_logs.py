"""Job logs: the lines a handler logs while its job runs — stdlib logging in the job's
context (its sync handler's thread included) and ctx.log — bounded per attempt and
written in batches: one statement per flush, `interval` seconds after the first line
waits or as soon as `batch` lines wait, and before the completer records outcomes, so a
finished job's log is whole when its status says finished. A job that logs nothing
costs nothing here. Writing never fails a job: a failed write is logged (the loop
"job logs", see LoopHealth), its lines kept for the next try up to `max_pending`, and
the worker stays healthy."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg

from skiplock import store
from skiplock.context import STORED_MARK, JobContext
from skiplock.logs import current_job
from skiplock.worker.deadline import wait_event
from skiplock.worker.loops import LoopHealth

LOOP = "job logs"
# (job id, attempt, time.time(), level, logger, message) as a handler logged it
Pending = tuple[int, int, float, str, str, str]


def level_name(levelno: int) -> str:
    """The stored level of a record's level number: custom levels round down."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


@dataclass
class AttemptLog:
    """What one attempt has logged so far: kept and dropped lines and bytes."""

    lines: int = 0
    bytes: int = 0
    dropped_lines: int = 0
    dropped_bytes: int = 0
    ended: bool = False


class JobLogWriter:
    """Buffers the log lines of worker `worker_id`'s jobs and writes them in batches.

    `add` is the JobContexts' log sink, called from any thread; the rest runs on the
    worker's event loop."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        worker_id: uuid.UUID,
        call: Callable[[store.Call[Any]], Awaitable[Any]],
        health: LoopHealth,
        *,
        max_lines: int = store.JOB_LOG_MAX_LINES,
        max_bytes: int = store.JOB_LOG_MAX_BYTES,
        interval: float = 0.2,
        batch: int = 1000,
        max_pending: int = 50_000,
    ) -> None:
        self._loop = loop
        self._worker_id = worker_id
        self._call = call
        self._health = health
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        self._lock = threading.Lock()  # handlers' threads add lines too
        self._lines: list[Pending] = []
        self._dropped: list[store.DroppedLines] = []
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._writing = asyncio.Lock()

    def add(self, ctx: JobContext, levelno: int, logger: str, message: str, created: float) -> None:
        """Keep one line of ctx's attempt, or count it as dropped past the attempt's bound."""
        data = message.encode("utf-8", "backslashreplace")  # lone surrogates, too
        if b"\0" in data:
            data = data.replace(b"\0", b"\\x00")  # text cannot hold NUL
        size = len(data)
        with self._lock:
            state = ctx.log_state
            if state is None:
                state = ctx.log_state = AttemptLog()
            if state.ended:
                return  # a thread that outlived its attempt: its marker is written
            if (
                state.dropped_lines
                or state.lines >= self.max_lines
                or state.bytes + size > self.max_bytes
                or len(self._lines) >= self.max_pending
            ):
                state.dropped_lines += 1
                state.dropped_bytes += size
                return
            state.lines += 1
            state.bytes += size
            job = ctx.job
            self._lines.append(
                (job.id, job.attempt, created, level_name(levelno), logger, data.decode())
            )
            waiting = len(self._lines)
        if waiting == 1:
            self._signal(self._wake)
        elif waiting == self.batch:
            self._signal(self._full)

    def attempt_ended(self, ctx: JobContext) -> None:
        """The attempt's handler is done: what it dropped goes with the next write (the
        attempt's marker line); lines logged after this are not kept."""
        state = ctx.log_state
        if state is None:
            return  # it logged nothing
        with self._lock:
            state.ended = True
            if not state.dropped_lines:
                return
            self._dropped.append(
                store.DroppedLines(ctx.id, ctx.attempt, state.dropped_lines, state.dropped_bytes)
            )
        self._signal(self._wake)

    def _signal(self, event: asyncio.Event) -> None:
        try:
            self._loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            pass  # the worker's loop is closed: nothing will write these lines

    @property
    def idle(self) -> bool:
        """Nothing waits to be written (read without the lock: a hint)."""
        return not self._lines and not self._dropped

    async def flush(self) -> float | None:
        """Write every line added so far in one statement; returns None, or after a failed
        write how long to wait before the next try (its lines are kept for it)."""
        if self.idle:
            return None
        async with self._writing:
            with self._lock:
                lines, self._lines = self._lines, []
                dropped, self._dropped = self._dropped, []
            if not lines and not dropped:
                return None
            try:
                await self._call(
                    store.append_job_logs(
                        self._worker_id,
                        [
                            store.LogLine(
                                job_id,
                                attempt,
                                datetime.fromtimestamp(created, timezone.utc),
                                level,
                                logger,
                                message,
                            )
                            for job_id, attempt, created, level, logger, message in lines
                        ],
                        dropped,
                        max_lines=self.max_lines,
                        max_bytes=self.max_bytes,
                    )
                )
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                # The values themselves are refused: the same batch would fail again.
                what = f"dropping {len(lines)} log lines the database refused"
                return self._health.failed(LOOP, exc, what, retried=False)
            except Exception as exc:
                with self._lock:
                    self._lines[:0] = lines
                    self._dropped[:0] = dropped
                    lost = len(self._lines) - self.max_pending
                    if lost > 0:
                        del self._lines[:lost]
                what = f"writing {len(lines)} log lines failed"
                if lost > 0:
                    what += f"; {lost} older lines lost"
                # Not a stall: a worker whose logs cannot be written still runs its jobs.
                return self._health.failed(LOOP, exc, what, retried=False)
            self._health.succeeded(LOOP)
            return None

    async def run(self) -> None:
        """Write lines as they come, for good (the worker cancels it)."""
        while True:
            await self._wake.wait()
            # Let lines gather: one statement per interval, sooner when a batch waits.
            await wait_event(self._full, self.interval)
            self._wake.clear()
            self._full.clear()
            delay = await self.flush()
            if delay is not None or not self.idle:
                await asyncio.sleep(delay or 0)
                self._wake.set()


class JobLogCapture(logging.Handler):
    """Hands every record logged in a job's context (logs.current_job) to that attempt's
    log; inert elsewhere. One per process, on the root logger: each record finds its
    worker through the job's context. Records reach it as they reach any handler of the
    root logger: past their loggers' levels."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))  # and the traceback, if any

    def emit(self, record: logging.LogRecord) -> None:
        ctx = current_job.get()
        if not isinstance(ctx, JobContext) or getattr(record, STORED_MARK, False):
            return
        try:
            ctx.store_log(record.levelno, record.name, self.format(record), record.created)
        except Exception:
            self.handleError(record)


def capture_job_logs() -> None:
    """Install the JobLogCapture on the root logger, unless one is there already."""
    root = logging.getLogger()
    if not any(isinstance(handler, JobLogCapture) for handler in root.handlers):
        root.addHandler(JobLogCapture())
