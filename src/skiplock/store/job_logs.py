"""Job logs (sql/functions/055_job_logs.sql): the worker appends its jobs' lines in
batches; readers page through one job's lines by seq."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, NamedTuple

from skiplock.store.call import Call, dataclass_row, int_array, scalar, text_array

# The bound of one attempt's log unless the worker is told otherwise: the SQL's defaults.
JOB_LOG_MAX_LINES = 1000
JOB_LOG_MAX_BYTES = 256 * 1024


class LogLine(NamedTuple):
    """One line a handler logged, as the worker sends it."""

    job_id: int
    attempt: int
    at: datetime
    level: str  # debug | info | warning | error | critical
    logger: str
    message: str


class DroppedLines(NamedTuple):
    """What the worker dropped of one attempt's log past its bound."""

    job_id: int
    attempt: int
    lines: int
    bytes: int


@dataclass(frozen=True)
class JobLogLine:
    """One stored line of a job's log; a marker line (dropped_lines set) counts the lines
    its attempt dropped past the bound."""

    seq: int
    attempt: int
    worker_id: uuid.UUID
    at: datetime
    level: str
    logger: str
    message: str
    dropped_lines: int | None = None
    dropped_bytes: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["worker_id"] = str(self.worker_id)
        out["at"] = self.at.isoformat()
        return out


def append_job_logs(
    worker_id: uuid.UUID,
    lines: Sequence[LogLine],
    dropped: Sequence[DroppedLines] = (),
    *,
    max_lines: int = JOB_LOG_MAX_LINES,
    max_bytes: int = JOB_LOG_MAX_BYTES,
) -> Call[int]:
    """How many of `lines` were stored (the rest: past their attempt's bound, or of a job
    that no longer exists)."""
    return Call(
        "SELECT skiplock.append_job_logs(%s, %s::bigint[], %s::integer[], %s::timestamptz[],"
        " %s::text[], %s::text[], %s::text[], %s::jsonb, %s, %s)",
        (
            worker_id,
            int_array([line.job_id for line in lines]),
            int_array([line.attempt for line in lines]),
            text_array([line.at.isoformat() for line in lines]),
            text_array([line.level for line in lines]),
            text_array([line.logger for line in lines]),
            text_array([line.message for line in lines]),
            json.dumps([d._asdict() for d in dropped]) if dropped else None,
            max_lines,
            max_bytes,
        ),
        lambda rows: int(scalar(rows) or 0),
    )


def job_logs(
    job_id: int, *, attempt: int | None = None, after: int = 0, limit: int = 1000
) -> Call[list[JobLogLine]]:
    """Up to `limit` lines of the job's log after seq `after`, oldest first; only those of
    `attempt` unless None. Empty for a job that logged nothing or does not exist."""
    return Call(
        "SELECT seq, attempt, worker_id, at, level, logger, message, dropped_lines,"
        " dropped_bytes FROM skiplock.job_logs(%s, %s, %s, %s)",
        (job_id, attempt, after, limit),
        list,
        dataclass_row(JobLogLine),
    )
