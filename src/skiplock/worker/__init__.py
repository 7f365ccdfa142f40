"""The worker runtime: fetch loop, executor, completer, listener, maintenance."""

from skiplock.worker.runtime import Worker, WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
