"""The worker runtime: fetch loop, executor, completer, listener, maintenance."""

from skiplock.worker.runtime import Worker
from skiplock.worker.settings import WorkerSettings

__all__ = ["Worker", "WorkerSettings"]
