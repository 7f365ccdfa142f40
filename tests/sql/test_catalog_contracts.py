"""What the catalog itself must say, read from pg_proc and pg_description rather than
from a list kept by hand: every function's and view's contract is its COMMENT (`\\df+`),
the very text above its CREATE in sql/functions/; every function taking an array is
planned per call unless its contract says why not; every SECURITY DEFINER function
pins its search_path."""

from __future__ import annotations

import re

import psycopg

from skiplock.migrate import load_functions

# The words a contract uses to say why a function taking arrays keeps the server's plan
# cache mode (e.g. its arrays are a handful of queue names).
NOT_PLANNED_PER_CALL = "Not planned per call:"


def headers() -> dict[tuple[str, str], str]:
    """{(FUNCTION|VIEW, name): the `--` lines directly above its CREATE, unmarked}."""
    found = {}
    for _, text in load_functions().files:
        lines = text.split("\n")
        for number, line in enumerate(lines):
            m = re.match(r"CREATE OR REPLACE (FUNCTION|VIEW) skiplock\.(\w+)", line)
            if not m:
                continue
            above = []
            for previous in reversed(lines[:number]):
                if not previous.startswith("--"):
                    break
                above.append(re.sub(r"^-- ?", "", previous))
            found[(m[1], m[2])] = "\n".join(reversed(above)).strip("\n")
    return found


def test_every_function_and_view_has_its_header_as_comment(conn: psycopg.Connection) -> None:
    comments = {
        (kind, name): comment
        for kind, name, comment in conn.execute(
            "SELECT 'FUNCTION', p.proname, obj_description(p.oid, 'pg_proc') FROM pg_proc p"
            " WHERE p.pronamespace = 'skiplock'::regnamespace"
            " UNION ALL"
            " SELECT 'VIEW', c.relname, obj_description(c.oid, 'pg_class') FROM pg_class c"
            " WHERE c.relnamespace = 'skiplock'::regnamespace AND c.relkind = 'v'"
        )
    }
    want = headers()
    assert set(comments) == set(want)
    for key, comment in comments.items():
        assert want[key], f"{key} has no header"
        assert comment == want[key], key
    # the public surface opens with its own name
    for (_kind, name), comment in comments.items():
        if not name.startswith("_"):
            assert comment.startswith(f"{name}:"), name


def test_functions_taking_arrays_are_planned_per_call(conn: psycopg.Connection) -> None:
    rows = conn.execute(
        "SELECT p.proname, coalesce(p.proconfig, '{}'), obj_description(p.oid, 'pg_proc')"
        " FROM pg_proc p WHERE p.pronamespace = 'skiplock'::regnamespace"
        "   AND EXISTS (SELECT 1 FROM unnest(p.proargtypes) t JOIN pg_type ty ON ty.oid = t"
        "               WHERE ty.typcategory = 'A')"
    ).fetchall()
    names = {name for name, _, _ in rows}
    assert {"complete_jobs", "claim_jobs", "_finish_jobs"} <= names
    for name, config, comment in rows:
        if NOT_PLANNED_PER_CALL in (comment or ""):
            continue
        assert any(c.startswith("plan_cache_mode=") for c in config), (name, config)


def test_security_definer_functions_pin_their_search_path(conn: psycopg.Connection) -> None:
    """SECURITY DEFINER exactly where a role without rights on the tables calls: the
    functions granted to skiplock_producer or skiplock_worker, but for the rules that
    read no table (sql/functions/150_privileges.sql)."""
    rows = conn.execute(
        "SELECT p.proname, p.prosecdef, coalesce(p.proconfig, '{}'),"
        "       has_function_privilege('skiplock_producer', p.oid, 'EXECUTE')"
        "       OR has_function_privilege('skiplock_worker', p.oid, 'EXECUTE')"
        " FROM pg_proc p WHERE p.pronamespace = 'skiplock'::regnamespace"
    ).fetchall()
    rules = {"retry_delay", "queue_matches", "job_duration_bounds"}
    definers = {name for name, definer, _, _ in rows if definer}
    granted = {name for name, _, _, granted in rows if granted}
    assert definers == granted - rules
    assert {"enqueue", "claim_jobs", "insert_jobs"} <= definers
    for name, definer, config, _ in rows:
        if definer:
            assert "search_path=skiplock, pg_temp" in config, (name, config)
