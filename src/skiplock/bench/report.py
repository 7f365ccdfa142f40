"""The bench report as plain text: a table of figures, and the soak's timeline."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

UNITS = {
    "jobs_per_s": "jobs/s",
    "calls_per_s": "calls/s",
    "enqueued_per_s": "jobs/s",
    "completed_per_s": "jobs/s",
    "seconds": "s",
    "backlog": "jobs",
    "xacts_per_call": "xacts",
    "xacts_per_s": "xacts/s",
    "cpu_percent_per_worker": "% core",
    "claims_per_s_per_worker": "claims/s",
    "worker_cpu_ms_per_1k_jobs": "ms",
    "rate_per_s": "jobs/s",
    "before_per_s": "jobs/s",
    "during_min_per_s": "jobs/s",
    "during_per_s": "jobs/s",
    "after_per_s": "jobs/s",
    "claim_ms_before": "ms",
    "claim_ms_during": "ms",
    "dead_tuples_peak": "rows",
    "backlog_at_end": "jobs",
    "db_cpu_ms_per_1k_jobs": "ms",
    "producer_cpu_ms_per_1k_jobs": "ms",
}


def number(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def render_table(report: Mapping[str, Any]) -> str:
    """The report as plain text: one line per figure, min / median / max over rounds."""
    s, m = report["settings"], report["machine"]
    lines = [
        f"skiplock bench: {s['rounds']} round(s), {s['workers']} worker process(es),"
        f" concurrency {s['concurrency']}, batch {s['batch_size'] or 'free slots'},"
        f" handler {s['handler']}, args {s['args_bytes']} B",
        f"PostgreSQL {m['postgresql']}, {m['nproc']} CPUs,"
        f" load average {m['load_average_start']} (start) / {m['load_average_end']} (end)",
        "",
    ]
    rows = []
    for name, result in report["scenarios"].items():
        for key, figure in result["figures"].items():
            rows.append(
                (
                    name,
                    key,
                    number(figure["min"]),
                    number(figure["median"]),
                    number(figure["max"]),
                    UNITS.get(key, "ms" if key.endswith("_ms") else ""),
                )
            )
    headers = ("SCENARIO", "FIGURE", "MIN", "MEDIAN", "MAX", "UNIT")
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        lines.append(
            "  ".join(
                v.rjust(w) if 1 < i < 5 else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines)


TIMELINE_COLUMNS = (
    ("at_s", "AT (s)"),
    ("enqueued_per_s", "ENQUEUED/s"),
    ("completed_per_s", "COMPLETED/s"),
    ("backlog", "BACKLOG"),
    ("jobs_table_mb", "JOBS TABLE MB"),
    ("dead_tuples", "DEAD TUPLES"),
    ("worker_rss_mb", "WORKER RSS MB"),
    ("claim_ms", "CLAIM ms"),
    ("jobs_autovacuums", "AUTOVACUUMS"),
    ("checkpoints", "CHECKPOINTS"),
)


def render_soak(report: Mapping[str, Any]) -> str:
    """The soak's timeline as plain text, one row per sample interval."""
    s = report["settings"]
    cells = [[title for _, title in TIMELINE_COLUMNS]]
    for row in report["timeline"]:
        cells.append([number(row[key]) if key in row else "n/a" for key, _ in TIMELINE_COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(TIMELINE_COLUMNS))]
    lines = [
        f"skiplock bench --soak {report['seconds']:.0f}: {s['workers']} worker process(es),"
        f" concurrency {s['concurrency']}, {report['rate']:,.0f} jobs/s offered"
        f" (half a drain's rate), one row per {s['sample_interval']:g} s",
        "",
    ]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
