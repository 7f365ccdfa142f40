"""The Overview's charts, drawn on the server as inline SVG from the metrics history
(store.metrics_series): throughput, failures, how long ready jobs waited to start
(p50/p95), queue depth and the oldest ready job. No script draws them, so they need no
JavaScript and pass the dashboard's Content-Security-Policy; colours are SVG attributes
(the policy forbids inline style), text and axes follow the page's colour through
currentColor, so dark mode is the stylesheet's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from skiplock.store import MetricsPoint

# The plot's geometry, in SVG user units; the stylesheet scales the SVG to its column.
WIDTH = 360
HEIGHT = 150
LEFT = 52  # room for the y axis' labels
RIGHT = 8
TOP = 10
BOTTOM = 22  # room for the x axis' labels
PLOT = {
    "width": WIDTH,
    "height": HEIGHT,
    "left": LEFT,
    "right": RIGHT,
    "top": TOP,
    "bottom": BOTTOM,
}
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM
# Series colours, readable on the light and the dark background alike.
BLUE = "#4c8ee8"
GREEN = "#2da44e"
RED = "#e5534b"
ORANGE = "#d4a72c"


def percentile(buckets: Sequence[int] | None, bounds: Sequence[float], q: float) -> float | None:
    """The upper bound of the histogram bucket that holds the q-quantile (0 < q <= 1):
    an estimate no finer than the buckets, the value the true quantile is at most.
    math.inf when it falls in the last bucket (past every bound); None without samples.
    `buckets` holds one count per bound plus the +Inf bucket, as metrics_series returns."""
    total = sum(buckets) if buckets else 0
    if not buckets or total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if count and seen >= rank:
            return bounds[index] if index < len(bounds) else math.inf
    return math.inf


def seconds_label(value: float | None) -> str:
    """A duration for a label or a table cell; `—` for none."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "past the last bound"
    if value < 1:
        return f"{value * 1000:.3g} ms"
    if value < 120:
        return f"{value:.3g} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def count_label(value: float) -> str:
    return f"{value:,.0f}"


def ready_label(point: MetricsPoint) -> str:
    """The sampled depth; `~` marks the sampler's estimate past its cap."""
    if point.ready is None:
        return "—"
    return ("~" if point.ready_estimated else "") + count_label(point.ready)


@dataclass(frozen=True)
class Series:
    """One line of a line chart, a value (or None) per period."""

    label: str
    colour: str
    values: list[float | None]  # None: nothing measured in that period


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: str
    at: str


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    path: str  # an SVG path's d: "M x,y L x,y …", a new M after each gap
    dots: list[tuple[float, float]]  # lone values, which a path would not show


@dataclass(frozen=True)
class Chart:
    """A drawn chart: its id (for the title and desc ids), title, a sentence for screen
    readers, the y axis' top label, the x axis' first and last labels, and its marks."""

    id: str
    title: str
    desc: str
    top_label: str
    first_label: str
    last_label: str
    bars: list[Bar]
    lines: list[Line]
    legend: list[tuple[str, str]]  # (label, colour)


def scale_top(values: Sequence[float], floor: float = 1.0) -> float:
    """The y axis' top: the greatest value, at least `floor` so an all-zero chart has an
    axis."""
    return max([floor, *values])


def y_of(value: float, top: float) -> float:
    return round(TOP + PLOT_HEIGHT * (1 - min(value, top) / top), 1)


def x_of(index: int, count: int) -> float:
    """The centre of period `index` of `count`."""
    return round(LEFT + PLOT_WIDTH * (index + 0.5) / count, 1)


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    values: Sequence[int],
    times: Sequence[str],
    colour: str,
) -> Chart:
    """Bars of counts per period (none drawn for a zero)."""
    top = scale_top(values)
    slot = PLOT_WIDTH / len(values)
    bars = [
        Bar(
            x=round(LEFT + slot * index + slot * 0.1, 1),
            y=y_of(value, top),
            width=round(max(slot * 0.8, 0.5), 1),
            height=round(TOP + PLOT_HEIGHT - y_of(value, top), 1),
            value=count_label(value),
            at=times[index],
        )
        for index, value in enumerate(values)
        if value
    ]
    legend = [(title, colour)]
    return Chart(chart_id, title, desc, count_label(top), times[0], times[-1], bars, [], legend)


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    series: Sequence[Series],
    times: Sequence[str],
    unit: str = "count",
) -> Chart:
    """Lines over the periods with a value; a gap where a period has none."""
    finite = [v for s in series for v in s.values if v is not None and not math.isinf(v)]
    # waits of a few ms are drawn to their own scale, not flat against a 1 s axis
    top = scale_top(finite, 0.01 if unit == "seconds" else 1.0)
    lines = []
    for one in series:
        runs: list[list[tuple[float, float]]] = [[]]
        for index, value in enumerate(one.values):
            if value is None:
                runs.append([])
                continue
            runs[-1].append((x_of(index, len(one.values)), y_of(value, top)))
        drawn = [run for run in runs if len(run) > 1]
        path = " ".join("M " + " L ".join(f"{x},{y}" for x, y in run) for run in drawn)
        dots = [run[0] for run in runs if len(run) == 1]
        lines.append(Line(one.label, one.colour, path, dots))
    top_label = seconds_label(top) if unit == "seconds" else count_label(top)
    legend = [(s.label, s.colour) for s in series]
    return Chart(chart_id, title, desc, top_label, times[0], times[-1], [], lines, legend)


@dataclass(frozen=True)
class Overview:
    """The Overview's charts and the numbers behind them (a row per period)."""

    charts: list[Chart]
    rows: list[dict[str, str]]
    has_data: bool


def latest(values: Sequence[float | None]) -> float | None:
    """The last value measured, for a chart's description."""
    return next((v for v in reversed(values) if v is not None), None)


def time_label(at: datetime, by_hour_over_days: bool) -> str:
    """A period's start in UTC, whatever the database session's time zone."""
    return at.astimezone(timezone.utc).strftime("%m-%d %H:%M" if by_hour_over_days else "%H:%M")


def overview_charts(
    points: Sequence[MetricsPoint], wait_bounds: Sequence[float], *, range_label: str, scope: str
) -> Overview:
    """The five charts of `points` (metrics_series, oldest first) over `range_label`
    for `scope` (all queues, or one)."""
    over_days = len(points) > 1 and (points[-1].at - points[0].at).days >= 1
    times = [time_label(p.at, over_days) for p in points]
    has_data = any(
        p.succeeded or p.failed or p.retried or p.wait_buckets or p.ready is not None
        for p in points
    )
    if not points or not has_data:
        return Overview([], [], False)
    p50 = [percentile(p.wait_buckets, wait_bounds, 0.5) for p in points]
    p95 = [percentile(p.wait_buckets, wait_bounds, 0.95) for p in points]
    ready = [None if p.ready is None else float(p.ready) for p in points]
    oldest = [p.oldest_ready_seconds for p in points]
    where = f"{scope}, last {range_label}"
    last_ready = next((ready_label(p) for p in reversed(points) if p.ready is not None), "—")
    succeeded = bar_chart(
        "chart-throughput",
        "Succeeded",
        f"Jobs that succeeded per period, {where}: {sum(p.succeeded for p in points)} in all.",
        [p.succeeded for p in points],
        times,
        GREEN,
    )
    failed = bar_chart(
        "chart-failures",
        "Failed",
        f"Jobs that failed for good per period, {where}: {sum(p.failed for p in points)} in"
        f" all, and {sum(p.retried for p in points)} failed attempts retried.",
        [p.failed for p in points],
        times,
        RED,
    )
    latency = line_chart(
        "chart-latency",
        "Wait to start",
        f"How long ready jobs waited to start, {where}: the 50th and 95th percentiles"
        " per period, estimated as the upper bound of their histogram bucket.",
        [Series("p50", BLUE, p50), Series("p95", ORANGE, p95)],
        times,
        "seconds",
    )
    depth = line_chart(
        "chart-depth",
        "Ready jobs",
        f"Jobs ready to run, sampled once a minute, {where}; latest sample: {last_ready}.",
        [Series("ready", BLUE, ready)],
        times,
    )
    age = line_chart(
        "chart-oldest",
        "Oldest ready job",
        f"How long the oldest ready job had been due when sampled, {where}; latest"
        f" sample: {seconds_label(latest(oldest))}.",
        [Series("age", ORANGE, oldest)],
        times,
        "seconds",
    )
    rows = [
        {
            "at": time_label(p.at, True),
            "succeeded": count_label(p.succeeded),
            "failed": count_label(p.failed),
            "retried": count_label(p.retried),
            "p50": seconds_label(p50[i]),
            "p95": seconds_label(p95[i]),
            "ready": ready_label(p),
            "oldest": seconds_label(p.oldest_ready_seconds),
        }
        for i, p in enumerate(points)
    ]
    return Overview([succeeded, failed, latency, depth, age], rows, True)
