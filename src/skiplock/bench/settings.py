"""What `skiplock bench` runs: its scenarios and settings."""

from __future__ import annotations

from dataclasses import dataclass

from skiplock.bench.handlers import HANDLERS

SCENARIOS = (
    "bulk-enqueue",
    "single-enqueue",
    "drain",
    "steady",
    "latency",
    "idle",
    "held-transaction",
)
# What runs when no scenario is named: the held transaction lasts minutes, so only on request.
DEFAULT_SCENARIOS = SCENARIOS[:-1]


@dataclass(frozen=True)
class BenchSettings:
    jobs: int = 20_000
    workers: int = 1
    concurrency: int = 200
    batch_size: int | None = None  # None: the worker's default, all free slots
    args_bytes: int = 0
    handler: str = "async-noop"
    rounds: int = 3
    duration: float = 10.0  # steady
    rate: float = 10_000.0  # steady
    idle_seconds: float = 5.0
    poll_interval: float = 1.0
    # held-transaction: load before, during and after an idle REPEATABLE READ transaction
    hold_seconds: float = 300.0
    hold_margin: float = 60.0  # seconds of load before the hold, and again after it
    sample_interval: float = 60.0  # one timeline row per interval (soak, held-transaction)

    def validate(self) -> None:
        for name, value, low in (
            ("jobs", self.jobs, 1),
            ("workers", self.workers, 1),
            ("concurrency", self.concurrency, 1),
            ("batch_size", self.batch_size or 1, 1),
            ("args_bytes", self.args_bytes, 0),
            ("rounds", self.rounds, 1),
            ("duration", self.duration, 0.1),
            ("rate", self.rate, 1),
            ("idle_seconds", self.idle_seconds, 0.1),
            ("poll_interval", self.poll_interval, 0.01),
            ("hold_seconds", self.hold_seconds, 0.1),
            ("hold_margin", self.hold_margin, 0.1),
            ("sample_interval", self.sample_interval, 0.1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.handler not in HANDLERS:
            raise ValueError(f"handler must be one of {', '.join(HANDLERS)}, got {self.handler}")
