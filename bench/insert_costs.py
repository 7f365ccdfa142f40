"""What putting a job in costs the server, layer by layer, measured in one run.

    python bench/insert_costs.py [--dsn DSN] [--statements 2000] [--rows 1000]
                                 [--rounds 5] [--rungs row,jobs,...] [--json out.json]

Each rung times a PL/pgSQL loop that runs one statement many times inside a transaction
that is then rolled back: server time only, no round trip and no commit (the two are
the same for every rung: one network exchange and one WAL flush). Two shapes: a
one-row statement (--statements of them; microseconds a statement) and a statement of
--rows rows (microseconds a row). The rungs, each the one before it plus one layer:

- row        a table of the jobs row's columns in their plain types, primary key only
- jobs       skiplock.jobs with its insert trigger off: the column domains, the check
             constraints and the five (partial) indexes
- notify     + the statement trigger, reduced to one pg_notify
- trigger    + the real insert trigger: created counter, queue registration, one
             NOTIFY naming the queues with ready jobs
- enqueue    skiplock.enqueue (one row) and skiplock.insert_jobs (many): the SQL API a
             client calls: task defaults, SECURITY DEFINER with its search_path
- resolve    a plain `INSERT INTO skiplock.jobs (task, args)`, as from psql, a SQL
             trigger or another language: the trigger rung plus the UPDATE that gives
             the rows the options they left out (_resolve_jobs)
- pgqueuer   PgQueuer's own enqueue statement on its own tables and trigger (its
             install query, in the same rolled-back transaction); only when the `bench`
             extra is installed

What a rung changes for its loop (a trigger switched off, a function replaced, a table
created) is rolled back with it. ALTER TABLE locks skiplock.jobs for the loop: run it
on a database no worker uses (the default, an embedded PostgreSQL, is one). Rounds are
interleaved (every rung once, then again). Prints min / median / max per rung.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from skiplock.bench import embedded_dsn, load_average
from skiplock.config import resolve_dsn
from skiplock.migrate import migrate

ROW_TABLE = "public.skiplock_bench_job_row"
# a job as a producer that resolved its options sends it (no insert-time resolution)
PLAIN_COLUMNS = "(task, args, queue, priority, max_attempts)"
PLAIN_VALUES = "'noop', '{}', 'default', 0, 20"
TRIGGER_OFF = "ALTER TABLE skiplock.jobs DISABLE TRIGGER jobs_inserted"
NOTIFY_ONLY_TRIGGER = """
CREATE OR REPLACE FUNCTION skiplock._jobs_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('skiplock_jobs', 'default');
    RETURN NULL;
END
$$"""


@dataclass(frozen=True)
class Rung:
    setup: Callable[[psycopg.Connection[Any]], None]
    one: str  # a PL/pgSQL statement inserting one job
    many: Callable[[int], str]  # the same for n jobs


def row_table(conn: psycopg.Connection[Any]) -> None:
    """skiplock.jobs' columns, domains replaced by their base types, a primary key."""
    conn.execute(
        f"CREATE TABLE {ROW_TABLE} (LIKE skiplock.jobs INCLUDING DEFAULTS INCLUDING IDENTITY)"
    )
    domains = conn.execute(
        "SELECT a.attname, format_type(t.typbasetype, t.typtypmod) FROM pg_attribute a"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = 'skiplock.jobs'::regclass AND t.typtype = 'd'"
    ).fetchall()
    for column, base in domains:
        conn.execute(f"ALTER TABLE {ROW_TABLE} ALTER COLUMN {column} TYPE {base}")
    conn.execute(f"ALTER TABLE {ROW_TABLE} ADD PRIMARY KEY (id)")


def plain_insert(
    table: str, columns: str = PLAIN_COLUMNS, values: str = PLAIN_VALUES
) -> tuple[str, Callable[[int], str]]:
    return (
        f"INSERT INTO {table} {columns} VALUES ({values})",
        lambda n: f"INSERT INTO {table} {columns} SELECT {values} FROM generate_series(1, {n})",
    )


def running(sql: str) -> Callable[[psycopg.Connection[Any]], None]:
    """A rung's setup that runs `sql` (several statements may be given)."""

    def setup(conn: psycopg.Connection[Any]) -> None:
        conn.execute(sql.encode())

    return setup


def nothing(conn: psycopg.Connection[Any]) -> None:
    """The setup of a rung that measures the schema as migrated."""


def insert_jobs(n: int) -> str:
    return f"PERFORM skiplock.insert_jobs('[{','.join(['{}'] * n)}]', '{{\"task\": \"noop\"}}')"


def pgqueuer_rung() -> Rung | None:
    """PgQueuer's enqueue statement as its Queries.enqueue sends it, arrays inlined,
    after its install query."""
    try:
        from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment, QueryQueueBuilder
    except ImportError:
        return None
    statement = QueryQueueBuilder().build_enqueue_query("raise")
    install = QueryBuilderEnvironment().build_install_query()

    def enqueue(n: int) -> str:
        arrays = (
            f"array_fill(0, ARRAY[{n}])",
            f"array_fill('noop'::text, ARRAY[{n}])",
            f"array_fill(NULL::bytea, ARRAY[{n}])",
            f"array_fill('0'::interval, ARRAY[{n}])",
            f"array_fill(NULL::text, ARRAY[{n}])",
            f"array_fill(NULL::jsonb, ARRAY[{n}])",
        )
        sql = statement
        for number in range(len(arrays), 0, -1):  # $6 before $1 (no $1 inside $10)
            sql = sql.replace(f"${number}", f"({arrays[number - 1]})")
        return sql + " INTO v_first"

    return Rung(running(install), enqueue(1), enqueue)


def rungs() -> dict[str, Rung]:
    jobs_one, jobs_many = plain_insert("skiplock.jobs")
    found = {
        "row": Rung(row_table, *plain_insert(ROW_TABLE)),
        "jobs": Rung(running(TRIGGER_OFF), jobs_one, jobs_many),
        "notify": Rung(running(NOTIFY_ONLY_TRIGGER), jobs_one, jobs_many),
        "trigger": Rung(nothing, jobs_one, jobs_many),
        "enqueue": Rung(nothing, "PERFORM skiplock.enqueue('noop')", insert_jobs),
        "resolve": Rung(nothing, *plain_insert("skiplock.jobs", "(task, args)", "'noop', '{}'")),
    }
    pgqueuer = pgqueuer_rung()
    if pgqueuer is not None:
        found["pgqueuer"] = pgqueuer
    return found


def loop(statement: str, times: int) -> str:
    return (
        "DO $loop$ DECLARE v_first record; BEGIN"
        f" FOR v_round IN 1..{times} LOOP {statement}; END LOOP; END $loop$"
    )


def time_rung(conn: psycopg.Connection[Any], rung: Rung, statement: str, times: int) -> float:
    """Seconds a statement, in a transaction rolled back after."""
    with conn.transaction(force_rollback=True):
        rung.setup(conn)
        conn.execute(loop(statement, max(1, times // 10)).encode())  # plans and caches warm
        started = time.perf_counter()
        conn.execute(loop(statement, times).encode())
        return (time.perf_counter() - started) / times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="default: SKIPLOCK_DSN, DATABASE_URL, else embedded")
    parser.add_argument("--statements", type=int, default=2000, help="one-row statements")
    parser.add_argument("--rows", type=int, default=1000, help="rows of a many-row statement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rungs", help="comma-separated; default: all available")
    parser.add_argument("--json", dest="json_path")
    opts = parser.parse_args()
    available = rungs()
    names = [n.strip() for n in opts.rungs.split(",")] if opts.rungs else list(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        sys.exit(f"unknown rung(s): {', '.join(unknown)} (available: {', '.join(available)})")
    many_statements = max(5, opts.statements // 100)
    figures: dict[str, dict[str, list[float]]] = {n: {"one": [], "many": []} for n in names}
    dsn = resolve_dsn(opts.dsn) or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        loads = [load_average()]
        for number in range(1, opts.rounds + 1):
            for name in names:
                rung = available[name]
                a_statement = time_rung(conn, rung, rung.one, opts.statements) * 1e6
                a_row = time_rung(conn, rung, rung.many(opts.rows), many_statements) * 1e6
                figures[name]["one"].append(a_statement)
                figures[name]["many"].append(a_row / opts.rows)
                print(
                    f"round {number} {name}: {a_statement:.1f} us a statement,"
                    f" {a_row / opts.rows:.2f} us a row",
                    file=sys.stderr,
                )
            loads.append(load_average())
    print("server time, min / median / max of the rounds")
    print(f"load average at start and after each round: {' | '.join(loads)}")
    print(f"{'rung':9} {'one row: us a statement':>27}   {f'{opts.rows} rows: us a row':>24}")
    for name in names:
        one, many = figures[name]["one"], figures[name]["many"]
        print(
            f"{name:9} {min(one):9.1f} {statistics.median(one):8.1f} {max(one):8.1f}"
            f"   {min(many):8.2f} {statistics.median(many):7.2f} {max(many):7.2f}"
        )
    if opts.json_path:
        with open(opts.json_path, "w") as out:
            json.dump({"rows": opts.rows, "us": figures, "loads": loads}, out)


if __name__ == "__main__":
    main()
