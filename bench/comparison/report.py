"""The markdown table (between the markers in docs/performance.md) and the plot."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

# results[system][variant][key] = values, one per round; variant "" holds what does not
# depend on the worker's configuration (the producer's scenarios)
Results = dict[str, dict[str, dict[str, list[float]]]]

MARK_START, MARK_END = "<!-- compare:start -->", "<!-- compare:end -->"
# drain-<n>k rows come first, from the sizes measured
THROUGHPUT = {
    "steady-10": "completed jobs/s",
    "steady-100": "completed jobs/s",
    "single-enqueue": "calls/s",
    "enqueue-10": "calls/s",
    "bulk-enqueue": "jobs/s",
}
# steady's other figures, read from the configuration that completed the most
STEADY_DETAIL = {
    "steady-10-enqueued": "jobs/s",
    "steady-10-backlog": "jobs left",
    "steady-100-enqueued": "jobs/s",
    "steady-100-backlog": "jobs left",
}
# the producer's scenarios, measured once a round whatever the worker's configuration
PRODUCER = ("single-enqueue", "enqueue-10", "bulk-enqueue")
LATENCY = (
    "latency-p50-ms",
    "latency-p99-ms",
    "latency-ack-p50-ms",
    "latency-ack-p99-ms",
    "single-enqueue-p50-ms",
    "single-enqueue-p99-ms",
    "enqueue-10-p50-ms",
    "enqueue-10-p99-ms",
)


def throughput_units(results: Results) -> dict[str, str]:
    drains = {
        key
        for by_variant in results.values()
        for figures in by_variant.values()
        for key in figures
        if key.startswith("drain-")
    }
    ordered = sorted(drains, key=lambda key: int(key.removeprefix("drain-").removesuffix("k")))
    return {**dict.fromkeys(ordered, "jobs/s"), **THROUGHPUT}


def best(by_variant: dict[str, dict[str, list[float]]], key: str) -> tuple[str, list[float]]:
    """The configuration with the best median for KEY (highest rate, lowest time)."""
    have = [(v, figures[key]) for v, figures in by_variant.items() if figures.get(key)]
    if not have:
        return "", []
    pick = min if key.endswith("-ms") else max
    return pick(have, key=lambda item: statistics.median(item[1]))


def cell(variant: str, values: list[float]) -> str:
    if not values:
        return "-"
    fmt = "{:,.0f}" if statistics.median(values) >= 100 else "{:.2f}"
    med, lo, hi = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return f"**{med}** ({lo} to {hi})" + (f", {variant}" if variant else "")


def rows(results: Results) -> list[tuple[str, str, list[str]]]:
    systems = list(results)
    out = []
    for key, unit in throughput_units(results).items():
        picks = [best(results[s], key) for s in systems]
        if any(values for _, values in picks):
            out.append((key, unit, [cell(*p) for p in picks]))
        for detail, detail_unit in STEADY_DETAIL.items():
            if detail.rsplit("-", 1)[0] == key:
                cells = []
                for s, (variant, _) in zip(systems, picks, strict=True):
                    values = results[s].get(variant, {}).get(detail, []) if variant else []
                    cells.append(cell("", values))
                out.append((f"{key}: {detail.rsplit('-', 1)[1]}", detail_unit, cells))
    for key in LATENCY:
        picks = [best(results[s], key) for s in systems]
        if any(values for _, values in picks):
            out.append((key.removesuffix("-ms"), "ms", [cell(*p) for p in picks]))
    return out


def median_of(results: Results, system: str, key: str) -> float | None:
    values = best(results.get(system, {}), key)[1]
    return statistics.median(values) if values else None


def markdown(results: Results, meta: dict[str, Any], configs: dict[str, str]) -> str:
    systems = list(results)
    lines = [
        f"Run on {meta['date']}: `{meta['command']}`; {meta['rounds']} round(s), systems "
        f"interleaved in each; {meta['nproc']} CPUs; PostgreSQL {meta['postgresql']} "
        "(embedded, default settings: fsync and synchronous_commit on), one server for "
        f"all; load average (1, 5, 15 min) {meta['load_start']} at start, "
        f"{meta['load_end']} at end, 1-minute load {meta['load_min']} to {meta['load_max']} "
        f"during the measurements; the producers on {meta['loop']}. "
        "Cells: **median** (min to max) of the rounds, and for a "
        "system tried in several configurations the one with the best median.",
        "",
        "| scenario | unit | " + " | ".join(systems) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    for key, unit, cells in rows(results):
        lines.append(f"| {key} | {unit} | " + " | ".join(cells) + " |")
    if meta.get("floor"):
        lines += [
            "",
            "Synchronous-claim floor (bench/latency_floor.py's `sync-claim` consumer on "
            "skiplock's database, same run: a sync psycopg connection that LISTENs and "
            "claims with `skiplock.claim_jobs`), ms from the enqueue's return to the claim: "
            f"p50 {cell('', meta['floor']['p50'])}, p99 {cell('', meta['floor']['p99'])}.",
        ]
    ratios = []
    for key in throughput_units(results):
        ours, theirs = median_of(results, "skiplock", key), median_of(results, "pgqueuer", key)
        if ours and theirs:
            ratios.append(f"{key} {ours / theirs:.2f}x")
    if ratios:
        lines += ["", "skiplock / PgQueuer, medians, each at its best: " + ", ".join(ratios) + "."]
    paired = []
    for key in PRODUCER:
        ours, theirs = (
            results.get(s, {}).get("", {}).get(key, []) for s in ("skiplock", "pgqueuer")
        )
        if ours and len(ours) == len(theirs):
            each = [a / b for a, b in zip(ours, theirs, strict=True)]
            paired.append(
                f"{key} {statistics.median(each):.2f}x ({min(each):.2f} to {max(each):.2f})"
            )
    if paired:
        lines += [
            "",
            "The producer's calls round by round (skiplock / PgQueuer within each round), "
            "median (min to max): " + ", ".join(paired) + ".",
        ]
    ceiling_lines = []
    # the one-connection ceiling: one worker process against what one connection can do
    # (the producer's figures are the same for every configuration)
    raw = results.get("raw-sql", {})
    one_connection = {**raw.get("", {}), **raw.get("1 connection", {})}
    for s in systems:
        if s == "raw-sql":
            continue
        shares = []
        # (not steady: its rate is the producer's)
        for key in (k for k in throughput_units(results) if not k.startswith("steady")):
            value, ceiling = median_of(results, s, key), one_connection.get(key)
            if value and ceiling:
                ceiling = statistics.median(ceiling)
                shares.append(f"{key} {100 * value / ceiling:.0f}%")
        if shares:
            ceiling_lines.append(f"- {s}: " + ", ".join(shares))
    if ceiling_lines:
        lines += ["", "Share of the one-connection raw-SQL ceiling (medians):", "", *ceiling_lines]
    lines += ["", "Configuration:", ""]
    lines += [f"- {s}: {configs[s]}" for s in systems]
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results)
    keys = [k for k in throughput_units(results) if any(best(results[s], k)[1] for s in systems)]
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(14, 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        meds, errs = [], [[], []]
        for key in keys:
            vals = best(results[s], key)[1] or [0.0]
            med = statistics.median(vals)
            meds.append(med)
            errs[0].append(med - min(vals))
            errs[1].append(max(vals) - med)
        xs = [x + i * width for x in range(len(keys))]
        bars.bar(xs, meds, width, yerr=errs, capsize=3, label=s)
    bars.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(keys))])
    bars.set_xticklabels(keys, rotation=20)
    bars.set_yscale("log")
    bars.set_ylabel("jobs/s (calls/s for enqueue calls), log scale")
    bars.set_title("Throughput, each at its best: median, whiskers min to max")
    bars.legend()
    for i, s in enumerate(systems):
        variant = best(results[s], "latency-ack-p50-ms")[0]
        figures = results[s].get(variant, {}) if variant else {}
        for key, style, what in (
            ("latency-samples", "-", "from the enqueue call"),
            ("latency-ack-samples", "--", "from its return"),
        ):
            samples = sorted(figures.get(key, []))
            if samples:
                ys = [(n + 1) / len(samples) for n in range(len(samples))]
                cdf.plot(samples, ys, style, color=f"C{i}", label=f"{s}, {what}")
    cdf.set_xscale("log")
    cdf.set_xlabel("enqueue → handler start, ms (log scale)")
    cdf.set_ylabel("fraction of jobs")
    cdf.set_title("Latency to an idle worker (CDF, all rounds)")
    cdf.grid(True, alpha=0.3)
    cdf.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1] if MARK_END in rest else ""
    doc.write_text(f"{head}{MARK_START}\n{block}\n{MARK_END}{tail}")
