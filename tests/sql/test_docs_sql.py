"""docs/sql.md stays true: every ```sql block runs, in order, on a fresh database, and the
page documents exactly the public functions and views the catalog holds and the NOTIFY
channels the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sql.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)
# `### name` or `### name_a / name_b`: a section about functions or views (other
# headings, such as `### Plain INSERT`, are topics)
API_HEADING = re.compile(r"^### ([a-z_][a-z0-9_]*(?: / [a-z_][a-z0-9_]*)*)$", re.MULTILINE)
CHANNEL_CONSTANT = re.compile(r'^\s*[A-Z_]*_CHANNEL\s*=\s*"([a-z0-9_]+)"', re.MULTILINE)
# a per-process channel: `probe_channel=f"skiplock_probe_{…}"` (documented as
# `skiplock_probe_<…>`)
CHANNEL_PATTERN = re.compile(r'\w*channel\w*\s*=\s*f"([a-z0-9_]+)\{', re.IGNORECASE)
SQL_NOTIFY = re.compile(r"pg_notify\(\s*'([a-z0-9_]+)'|\bNOTIFY\s+([a-z0-9_]+)", re.IGNORECASE)
DOC_CHANNEL_ROW = re.compile(r"^\| `([a-z0-9_]+)(<[^>]*>)?` \|", re.MULTILINE)


def sql_blocks(text: str | None = None) -> list[str]:
    blocks = []
    for match in SQL_BLOCK.finditer(DOC.read_text() if text is None else text):
        # psql meta-commands (\x, \gset, …) are not SQL; the server would reject them
        lines = [ln for ln in match[1].splitlines() if not ln.lstrip().startswith("\\")]
        blocks.append("\n".join(lines))
    return blocks


def api_sections() -> dict[str, str]:
    """Each name of an API heading, with the text of its section (up to the next heading)."""
    text = DOC.read_text()
    sections = {}
    for match in API_HEADING.finditer(text):
        rest = text[match.end() :]
        end = re.search(r"^#{2,3} ", rest, re.MULTILINE)
        body = rest[: end.start() if end else len(rest)]
        for name in match[1].split(" / "):
            assert name not in sections, f"two sections for {name}"
            sections[name] = body
    return sections


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def catalog(conn: psycopg.Connection) -> tuple[set[str], set[str], set[str]]:
    """(public functions, internal functions, views) of schema skiplock."""
    functions = {
        name
        for (name,) in conn.execute(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'skiplock'::regnamespace"
        ).fetchall()
    }
    internal = {name for name in functions if name.startswith("_")}
    views = {
        name
        for (name,) in conn.execute(
            "SELECT viewname FROM pg_views WHERE schemaname = 'skiplock'"
        ).fetchall()
    }
    return functions - internal, internal, views


def test_every_public_function_and_view_has_a_section(conn: psycopg.Connection) -> None:
    """The page has a `### name` section, with an example, for each public function and
    view in the catalog, and none for anything else."""
    public, _, views = catalog(conn)
    sections = api_sections()
    assert sorted((public | views) - sections.keys()) == []
    # no section for a function or view that does not exist, or is internal
    assert sorted(sections.keys() - public - views) == []
    # and each section shows its function or view at work in a runnable example
    without_example = [
        name
        for name, body in sections.items()
        if not any(re.search(rf"\bskiplock\.{name}\b", b) for b in sql_blocks(body))
    ]
    assert without_example == []


def test_the_page_calls_only_public_functions(conn: psycopg.Connection) -> None:
    """No call to a function that does not exist, and no internal helper named."""
    public, internal, _ = catalog(conn)
    called = set(re.findall(r"\bskiplock\.([a-z_][a-z0-9_]*)\(", DOC.read_text()))
    assert sorted(called - public) == []
    named = set(re.findall(r"`([a-z_][a-z0-9_]*)`", DOC.read_text()))
    assert sorted(named & internal) == []


def test_every_notify_channel_is_documented() -> None:
    """The NOTIFY table lists exactly the channels the code LISTENs or NOTIFYs on: the
    *_CHANNEL constants of src/, per-process channel patterns, pg_notify in the SQL."""
    in_code = set()
    for path in (ROOT / "src").rglob("*.py"):
        source = path.read_text()
        in_code |= set(CHANNEL_CONSTANT.findall(source))
        in_code |= {f"{prefix}<>" for prefix in CHANNEL_PATTERN.findall(source)}
    for path in (ROOT / "sql" / "functions").glob("*.sql"):
        code = "\n".join(
            ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("--")
        )
        in_code |= {a or b for a, b in SQL_NOTIFY.findall(code)}
    assert "skiplock_finished" in in_code and "skiplock_jobs" in in_code  # the scan works
    documented = {
        name + ("<>" if pattern else "")
        for name, pattern in DOC_CHANNEL_ROW.findall(section("NOTIFY channels"))
    }
    assert sorted(in_code - documented) == []
    assert sorted(documented - in_code) == []


def test_sql_examples_run_in_order(conn: psycopg.Connection) -> None:
    blocks = sql_blocks()
    assert len(blocks) >= 20
    for number, block in enumerate(blocks, 1):
        try:
            conn.execute(block.encode())  # bytes: no placeholder parsing, several statements
        except psycopg.Error as exc:
            raise AssertionError(
                f"sql block {number} of {DOC.name} failed: {exc}\n{block}"
            ) from exc

    # the story the page tells actually happened (no example silently hit nothing)
    statuses = dict(conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall())
    assert statuses == {
        1: "succeeded",  # complete_jobs
        2: "queued",  # cancel_job while scheduled, then retry_job
        3: "retrying",  # rescued after its lease expired
        4: "retrying",  # fail_jobs with retry_in
        5: "queued",  # dead-lettered with retry: false, then redrive_dead_letters
        6: "queued",  # release_jobs
        # (the bulk insert examples' rolled-back ids 7-12 are used up)
        13: "queued",  # unique_key: the second enqueue returned 13 again
        # (the deduplicated enqueue above used up id 14: sequences never give one back)
        15: "queued",  # enqueued with a trace context in meta
        16: "queued",  # extract
        17: "waiting",  # load, waiting on 16
        # (18 was cancelled, then removed by delete_job)
        19: "succeeded",  # workflow step fetch
        20: "queued",  # workflow step store, cancelled with its workflow, then retried
        21: "queued",  # fired by fire_schedule
        22: "queued",  # run_schedule: the schedule's job now
        23: "queued",  # enqueue with callback_url (result webhooks)
        24: "queued",  # plain INSERT with callback_url
        25: "queued",  # enqueue_many with callback_url
    }
    (trace,) = conn.execute("SELECT meta -> 'trace' FROM skiplock.jobs WHERE id = 15").fetchone()
    assert trace == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    (args,) = conn.execute("SELECT args FROM skiplock.jobs WHERE id = 20").fetchone()
    assert args == {"rows": [["ada", 36], ["grace", 45]]}
    (meta,) = conn.execute("SELECT meta FROM skiplock.jobs WHERE id = 21").fetchone()
    assert meta["schedule"] == "nightly-report"
    last_errors = dict(
        conn.execute("SELECT id, last_error ->> 'type' FROM skiplock.all_jobs").fetchall()
    )
    assert last_errors[3] == "LeaseExpired"
    assert last_errors[5] == "Discard"
    assert conn.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)
    # prune_audit_log's example deleted the entry it wrote
    assert conn.execute("SELECT count(*) FROM skiplock.audit_log").fetchone() == (0,)
    # the schedule, the token and the queue the examples made are gone or revoked
    assert conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone() == (0,)
    revoked = conn.execute("SELECT revoked_at IS NOT NULL FROM skiplock.api_tokens").fetchall()
    assert revoked == [(True,)]
    assert conn.execute("SELECT name FROM skiplock.queues WHERE name = 'imports'").fetchall() == []
