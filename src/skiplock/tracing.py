"""OpenTelemetry tracing of enqueue and execution (the `otel` extra; docs/tracing.md).

An enqueue made while a span is current opens a PRODUCER span `skiplock enqueue <task>`
and writes its W3C trace context into the job's meta under TRACE_META_KEY; the worker
runs the handler inside a CONSUMER span `skiplock run <task>`, a child of that context.
The API's RequestTraceContext makes an HTTP caller's `traceparent` header the parent
of what its request enqueues. Without opentelemetry-api installed each of these only
checks a module flag: the import is tried once per process, never per job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from skiplock.version import __version__

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from skiplock.jobs import ClaimedJob
    from skiplock.store import EnqueueRequest

# meta["trace"] = {"traceparent": "00-<trace id>-<span id>-01", "tracestate": ...}: the
# one place a job carries its trace context; raw SQL enqueues may set it themselves.
TRACE_META_KEY = "trace"
SYSTEM = "skiplock"

_otel: Any = None  # (trace, context, propagate) modules once loaded
_tried = False
_found: Any = None  # skiplock's tracer, once a tracer provider is set
_look_again_at = 0.0  # while none is set: when to look again (time.monotonic)
LOOK_AGAIN_EVERY = 1.0


def _load() -> Any:
    """The opentelemetry modules, or None when the API is not installed (tried once)."""
    global _otel, _tried
    if not _tried:
        _tried = True
        try:
            from opentelemetry import context, propagate, trace
        except ImportError:
            _otel = None
        else:
            _otel = (trace, context, propagate)
    return _otel


def _tracer(otel: Any) -> Any:
    """skiplock's tracer from the global provider, or None while no provider is set.

    Without a provider every span would be a no-op that still costs a noticeable share
    of a short job to make, so skiplock makes none. Looking the provider up is not free
    either (a KeyError inside opentelemetry's environment check), so while none is set it
    is looked up at most once every LOOK_AGAIN_EVERY seconds: a provider set after
    skiplock started working is used from then on. Once set, a provider cannot change.
    """
    global _found, _look_again_at
    if _found is not None:
        return _found
    now = time.monotonic()
    if now < _look_again_at:
        return None
    trace = otel[0]
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        _look_again_at = now + LOOK_AGAIN_EVERY
        return None
    _found = provider.get_tracer("skiplock", __version__)
    return _found


class EnqueueSpan:
    """The PRODUCER span of one enqueue call, whose `requests` carry its trace context.

    `with EnqueueSpan(requests) as traced:` insert `traced.requests`, then
    `traced.done(ids)`. When tracing is off or no span is current, `requests` are the
    ones given and nothing else happens.
    """

    __slots__ = ("_otel", "_span", "_token", "requests")

    def __init__(self, requests: Sequence[EnqueueRequest]) -> None:
        self.requests = requests
        self._span: Any = None
        self._token: object = None
        otel = self._otel = _load()
        if otel is None or not requests:
            return
        trace, _, propagate = otel
        tracer = _tracer(otel)
        if tracer is None or not trace.get_current_span().get_span_context().is_valid:
            return
        tasks = {request.task for request in requests}
        queues = {request.queue or "default" for request in requests}
        # Few attributes: the SDK checks each one, and every enqueue pays for the checks.
        attributes: dict[str, Any] = {"messaging.system": SYSTEM}
        if len(queues) == 1:
            attributes["messaging.destination.name"] = next(iter(queues))
        if len(requests) > 1:
            attributes["messaging.batch.message_count"] = len(requests)
        name = f"skiplock enqueue {next(iter(tasks))}" if len(tasks) == 1 else "skiplock enqueue"
        span = tracer.start_span(name, kind=trace.SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        self._span = span
        self.requests = [_with_trace(request, carrier) for request in requests]

    def done(self, ids: Sequence[int]) -> None:
        """Note the ids the database gave the jobs."""
        if self._span is not None and len(ids) == 1:
            self._span.set_attribute("messaging.message.id", str(ids[0]))

    def __enter__(self) -> EnqueueSpan:
        if self._span is not None:
            trace, context, _ = self._otel
            # Current while the insert runs, so an instrumented driver's spans nest in it.
            self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._span is None:
            return
        trace, context, _ = self._otel
        context.detach(self._token)
        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        self._span.end()


def _with_trace(request: EnqueueRequest, carrier: dict[str, str]) -> EnqueueRequest:
    meta = request.meta or {}
    if TRACE_META_KEY in meta:  # the caller chose the parent (e.g. forwarded from elsewhere)
        return request
    return request._replace(meta={**meta, TRACE_META_KEY: carrier})


class RunSpan:
    """The CONSUMER span around one attempt, current while the handler runs.

    Built by RunSpan.start (None when tracing is off); `with span:` makes it current and
    ends it, marking the outcome `cancelled` when the attempt is cancelled.
    """

    __slots__ = ("_otel", "_span", "_token")

    def __init__(self, otel: Any, span: Any) -> None:
        self._otel = otel
        self._span = span
        self._token: object = None

    @classmethod
    def start(cls, job: ClaimedJob) -> RunSpan | None:
        otel = _load()
        tracer = None if otel is None else _tracer(otel)
        if tracer is None:
            return None
        trace, _, propagate = otel
        carrier = job.meta.get(TRACE_META_KEY) if job.meta else None
        parent = None
        if isinstance(carrier, Mapping):
            # Written by any producer, raw SQL included: only text values are headers.
            headers = {k: v for k, v in carrier.items() if isinstance(v, str)}
            parent = propagate.extract(headers)
        span = tracer.start_span(
            f"skiplock run {job.task}",
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": SYSTEM,
                "messaging.destination.name": job.queue,
                "messaging.message.id": str(job.id),
                "skiplock.job.attempt": job.attempt,
            },
        )
        return cls(otel, span)

    def finish(self, outcome: str, exc: BaseException | None = None) -> None:
        """Record how the attempt went: `succeeded`, or a failure label (failed, timeout,
        retry, discarded, invalid_args, unknown_task) with its exception."""
        trace = self._otel[0]
        self._span.set_attribute("skiplock.job.outcome", outcome)
        if outcome == "succeeded":
            return
        if exc is not None:
            self._span.record_exception(exc)
        description = f"{type(exc).__name__}: {exc}" if exc is not None else outcome
        self._span.set_status(trace.Status(trace.StatusCode.ERROR, description))

    def __enter__(self) -> RunSpan:
        trace, context, _ = self._otel
        self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context = self._otel[1]
        context.detach(self._token)
        if isinstance(exc, asyncio.CancelledError):
            # Stopped from outside: cancelled on request, worker shutdown or lease lost.
            self._span.set_attribute("skiplock.job.outcome", "cancelled")
        elif exc is not None:
            self.finish("failed", exc)
        self._span.end()


class RequestTraceContext:
    """ASGI middleware: while an HTTP request is served, its W3C `traceparent` (and
    `tracestate`) header is the current trace context, so the jobs it enqueues are
    children of the caller's span. Only when no span is current already: a server
    instrumented by OpenTelemetry has made its own request span current, and that wins.
    """

    HEADERS = (b"traceparent", b"tracestate")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        otel = _load() if scope["type"] == "http" else None
        if otel is None or _tracer(otel) is None:
            return await self.app(scope, receive, send)
        trace, context, propagate = otel
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in self.HEADERS
        }
        if "traceparent" not in headers or trace.get_current_span().get_span_context().is_valid:
            return await self.app(scope, receive, send)
        token = context.attach(propagate.extract(headers))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
