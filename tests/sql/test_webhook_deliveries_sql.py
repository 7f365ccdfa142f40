"""A job's webhook deliveries are linked to it when they are enqueued, read back by
skiplock.webhook_deliveries with index probes only, and forgotten with either job."""

from __future__ import annotations

import json

import psycopg

from skiplock import store

W = "00000000-0000-0000-0000-0000000000cc"
HOOK = "https://example.com/hooks/skiplock"


def claim(conn: psycopg.Connection, queue: str = "default", n: int = 100) -> list[tuple[int, int]]:
    return conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], %s)", (W, queue, n)
    ).fetchall()


def complete(conn: psycopg.Connection, tokens: list[tuple[int, int]]) -> None:
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W, [t[0] for t in tokens], [t[1] for t in tokens], ['{"ok": true}'] * len(tokens)),
    )


def fail(conn: psycopg.Connection, tokens: list[tuple[int, int]], error: str) -> None:
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (
            W,
            [t[0] for t in tokens],
            [t[1] for t in tokens],
            [f'{{"error": "{error}", "type": "HTTPError"}}'] * len(tokens),
        ),
    )


def links(conn: psycopg.Connection) -> list[tuple[int, int]]:
    return conn.execute(
        "SELECT job_id, delivery_id FROM skiplock.webhook_deliveries ORDER BY 1, 2"
    ).fetchall()


def test_a_finish_links_each_delivery_to_its_job_in_the_same_statement(
    conn: psycopg.Connection,
) -> None:
    ok = conn.execute(
        "SELECT skiplock.enqueue('report', queue => 'work', callback_url => %s)", (HOOK,)
    ).fetchone()[0]
    dead = conn.execute(
        "SELECT skiplock.enqueue('report', queue => 'work', max_attempts => 1, callback_url => %s)",
        (HOOK,),
    ).fetchone()[0]
    quiet = conn.execute("SELECT skiplock.enqueue('report', queue => 'work')").fetchone()[0]
    tokens = dict(claim(conn, "work"))
    complete(conn, [(ok, tokens[ok]), (quiet, tokens[quiet])])
    fail(conn, [(dead, tokens[dead])], "boom")

    found = links(conn)
    assert [job for job, _ in found] == [ok, dead]
    for job, delivery in found:
        args = conn.execute(
            "SELECT task, args -> 'outcome' ->> 'job_id' FROM skiplock.all_jobs WHERE id = %s",
            (delivery,),
        ).fetchone()
        assert args == ("skiplock.webhook", str(job))
    assert store.webhook_deliveries(quiet).run(conn) == []
    assert store.webhook_deliveries(10**12).run(conn) == []


def test_deliveries_read_with_status_attempts_and_last_error(conn: psycopg.Connection) -> None:
    job = conn.execute(
        "SELECT skiplock.enqueue('report', queue => 'work', callback_url => %s)", (HOOK,)
    ).fetchone()[0]
    complete(conn, claim(conn, "work"))
    # the delivery fails once, then the job is retried and finishes again: two deliveries
    first = claim(conn, "work")
    fail(conn, first, "503 from receiver")
    conn.execute("SELECT skiplock.retry_job(%s)", (job,))
    complete(conn, [t for t in claim(conn, "work") if t[0] == job])

    newest, oldest = store.webhook_deliveries(job).run(conn)
    assert oldest.delivery_id == first[0][0]
    assert (oldest.status, oldest.attempt, oldest.max_attempts) == ("retrying", 1, 10)
    assert oldest.last_error == "503 from receiver"
    assert oldest.url == HOOK and oldest.finished_at is None and oldest.run_at is not None
    assert (newest.status, newest.attempt, newest.last_error) == ("queued", 0, None)
    assert newest.delivery_id > oldest.delivery_id
    assert newest.to_json()["created_at"] == newest.created_at.isoformat()


def test_links_go_with_either_job_and_stay_through_a_retry(conn: psycopg.Connection) -> None:
    pruned, kept, dead = (
        conn.execute(
            "SELECT skiplock.enqueue('report', queue => 'work', max_attempts => 1,"
            " callback_url => %s)",
            (HOOK,),
        ).fetchone()[0]
        for _ in range(3)
    )
    tokens = dict(claim(conn, "work"))
    complete(conn, [(pruned, tokens[pruned]), (kept, tokens[kept])])
    fail(conn, [(dead, tokens[dead])], "boom")
    by_job = dict(links(conn))
    assert set(by_job) == {pruned, kept, dead}

    # retry_job moves a finished job back to the hot table: it keeps its link
    conn.execute("SELECT skiplock.retry_job(%s)", (kept,))
    assert dict(links(conn)) == by_job

    # a job pruned with its history takes its links along
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - interval '8 days' WHERE id = %s",
        (pruned,),
    )
    assert conn.execute("SELECT skiplock.prune_job_history(interval '7 days')").fetchone()[0] == 1
    assert dict(links(conn)) == {kept: by_job[kept], dead: by_job[dead]}

    # a dead letter purged, likewise
    conn.execute("SELECT skiplock.purge_dead_letters()")
    assert dict(links(conn)) == {kept: by_job[kept]}

    # and a delivery job pruned before its job leaves no link behind
    complete(conn, [t for t in claim(conn, "work") if t[0] == by_job[kept]])
    conn.execute(
        "UPDATE skiplock.job_history SET finished_at = now() - interval '8 days' WHERE id = %s",
        (by_job[kept],),
    )
    assert conn.execute("SELECT skiplock.prune_job_history(interval '7 days')").fetchone()[0] == 1
    assert links(conn) == []
    assert store.webhook_deliveries(kept).run(conn) == []


def plan(conn: psycopg.Connection, sql: str, params: object) -> str:
    rows = conn.execute(f"EXPLAIN (COSTS OFF) {sql}".encode(), params).fetchall()
    return "\n".join(row[0] for row in rows)


def test_reading_deliveries_and_dependencies_probes_indexes_only(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.enqueue_many((SELECT jsonb_agg(jsonb_build_object('task', 't',"
        " 'callback_url', %s::text)) FROM generate_series(1, 3000)))",
        (HOOK,),
    )
    complete(conn, claim(conn, "default", 3000))  # 3000 deliveries: jobs 3001 to 6000
    conn.execute(
        "SELECT skiplock.enqueue_many((SELECT jsonb_agg(jsonb_build_object('task', 't',"
        " 'depends_on', jsonb_build_array(g))) FROM generate_series(3001, 4000) g))"
    )
    conn.execute(
        "SELECT skiplock.enqueue_many((SELECT jsonb_agg(jsonb_build_object('task', 't',"
        " 'queue', 'doomed', 'max_attempts', 1)) FROM generate_series(1, 1000)))"
    )
    fail(conn, claim(conn, "doomed", 1000), "boom")
    chain = {
        "steps": [
            {
                "name": f"s{i}",
                "task": "t",
                "queue": "flows",
                **({"after": [f"s{i - 1}"]} if i else {}),
            }
            for i in range(5)
        ]
    }
    conn.execute(
        "SELECT skiplock.enqueue_workflow(%s::jsonb) FROM generate_series(1, 300)",
        (json.dumps(chain),),
    )
    conn.execute("ANALYZE")
    job = 1500

    # webhook_deliveries is inlined: its plan is the plan of the store's call
    deliveries = store.webhook_deliveries(job)
    reads = [plan(conn, deliveries.sql, deliveries.params)]
    links_call = store.dependency_links(3500, [1400, 1401])
    reads.append(plan(conn, links_call.sql, links_call.params))
    step = conn.execute(
        "SELECT job_id FROM skiplock.workflow_steps WHERE name = 's2' LIMIT 1"
    ).fetchone()[0]
    step_links = store.dependency_links(step, [step - 1])
    reads.append(plan(conn, step_links.sql, step_links.params))
    # an index scan, or a bitmap heap scan fed by one; never a scan of a whole table
    for read in reads:
        assert "Seq Scan" not in read, read
    assert "webhook_deliveries_pkey" in reads[0], reads[0]
    for table in ("jobs", "job_history", "dead_jobs"):
        assert f" on {table}" in reads[0] and f" on {table}" in reads[1], reads
    assert "job_dependencies_pkey" in reads[1], reads[1]
    assert "workflow_steps_job_idx" in reads[2] and "workflow_steps_pkey" in reads[2], reads[2]
    assert [(j.side, j.id) for j in step_links.run(conn)] == [
        ("depends_on", step - 1),
        ("dependent", step + 1),
    ]
    assert len(store.webhook_deliveries(job).run(conn)) == 1
