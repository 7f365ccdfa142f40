"""The SQL API (schema `skiplock`), exercised with plain SQL on a real PostgreSQL.

Time is moved with the functions' `p_now` parameter, never by sleeping; notifications are
drained up to a sentinel NOTIFY sent after the statement under test, so absence is proven
without waiting for a timeout.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from conftest import wait_until
from skiplock import store

Connect = Callable[..., psycopg.Connection]

W1 = uuid.UUID("00000000-0000-4000-8000-000000000001")
W2 = uuid.UUID("00000000-0000-4000-8000-000000000002")
# a fixed instant far enough ahead that every job enqueued "now" is due by then
T0 = datetime(2100, 1, 1, tzinfo=timezone.utc)


# --- helpers -------------------------------------------------------------------------


def one(conn: psycopg.Connection, sql: str, params: Sequence[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def enqueue(conn: psycopg.Connection, task: str = "t", **kwargs: Any) -> int:
    """skiplock.enqueue with named SQL arguments taken from the keyword arguments."""
    named = "".join(f", {k} => %({k})s" for k in kwargs)
    params = {k: Jsonb(v) if isinstance(v, dict) else v for k, v in kwargs.items()}
    return one(conn, f"SELECT skiplock.enqueue(%(task)s{named})", {"task": task, **params})


def claim(
    conn: psycopg.Connection,
    worker: uuid.UUID = W1,
    queues: Sequence[str] = ("default",),
    limit: int = 10,
    *,
    lease: str = "30 seconds",
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """Claim jobs; returns (id, attempt) pairs."""
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, %s, %s, %s::interval, %s)",
        (worker, list(queues), limit, lease, now),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def complete(
    conn: psycopg.Connection,
    worker: uuid.UUID,
    jobs: Sequence[tuple[int, int]],
    results: Sequence[Any] | None = None,
    now: datetime | None = None,
) -> list[int]:
    results = results if results is not None else [None] * len(jobs)
    rows = conn.execute(
        "SELECT * FROM skiplock.complete_jobs(%s, %s, %s, %s::jsonb[], %s)",
        (
            worker,
            [i for i, _ in jobs],
            [a for _, a in jobs],
            [None if r is None else Jsonb(r) for r in results],
            now,
        ),
    ).fetchall()
    return [r[0] for r in rows]


def fail(
    conn: psycopg.Connection,
    worker: uuid.UUID,
    jobs: Sequence[tuple[int, int]],
    error: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> list[tuple[int, str]]:
    error = error if error is not None else {"error": "boom", "type": "RuntimeError"}
    rows = conn.execute(
        "SELECT id, status FROM skiplock.fail_jobs(%s, %s, %s, %s::jsonb[], %s)",
        (worker, [i for i, _ in jobs], [a for _, a in jobs], [Jsonb(error)] * len(jobs), now),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def status(conn: psycopg.Connection, job_id: int) -> str | None:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return None if row is None else row[0]


def job_count(conn: psycopg.Connection) -> int:
    return one(conn, "SELECT count(*) FROM skiplock.all_jobs")


def listen(connect: Connect, *channels: str) -> psycopg.Connection:
    listener = connect(autocommit=True)
    for channel in channels:
        listener.execute(f"LISTEN {channel}")
    return listener


def notifications_until_sentinel(
    listener: psycopg.Connection, sender: psycopg.Connection, channel: str
) -> list[str]:
    """Payloads on `channel` that arrive before a sentinel NOTIFY sent now by `sender`.

    Notifications from one session arrive in commit order, so everything the statements
    before the sentinel sent is in the list, and nothing needs a timeout to be absent.
    """
    token = f"sentinel-{uuid.uuid4().hex}"
    sender.execute("SELECT pg_notify(%s, %s)", (channel, token))
    got = []
    for n in listener.notifies(timeout=30):
        if n.channel == channel and n.payload == token:
            return got
        if n.channel == channel:
            got.append(n.payload)
    raise AssertionError(f"sentinel on {channel} not received; got {got}")


# --- enqueue and statuses ------------------------------------------------------------


def test_enqueue_named_arguments(conn: psycopg.Connection) -> None:
    job_id = enqueue(
        conn,
        "reports.build",
        args={"month": "2024-05"},
        queue="reports",
        priority=5,
        run_at=T0,
        delay=timedelta(seconds=10),
        max_attempts=3,
        retry_policy={"kind": "fixed", "base": 2},
        timeout=timedelta(minutes=5),
        tags=["monthly", "pdf"],
        meta={"by": "ada"},
    )
    row = conn.execute(
        "SELECT task, args, queue, priority, run_at, max_attempts, retry_policy, timeout,"
        " tags, meta, attempt, status FROM skiplock.all_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (
        "reports.build",
        {"month": "2024-05"},
        "reports",
        5,
        T0 + timedelta(seconds=10),  # run_at and delay add up
        3,
        {"kind": "fixed", "base": 2},
        timedelta(minutes=5),
        ["monthly", "pdf"],
        {"by": "ada"},
        0,
        "scheduled",
    )
    # the queue is known as soon as a job names it
    assert one(conn, "SELECT count(*) FROM skiplock.queues WHERE name = 'reports'") == 1


def test_enqueue_defaults(conn: psycopg.Connection) -> None:
    job_id = one(conn, "SELECT skiplock.enqueue('echo')")
    row = conn.execute(
        "SELECT args, queue, priority, max_attempts, retry_policy, timeout, tags, meta, status"
        " FROM skiplock.all_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == ({}, "default", 0, 20, None, None, [], {}, "queued")


def test_every_status_in_all_jobs(conn: psycopg.Connection) -> None:
    queued = enqueue(conn, queue="q_queued")
    scheduled = enqueue(conn, queue="q_sched", delay=timedelta(hours=1))

    running = enqueue(conn, queue="q_running")
    assert claim(conn, queues=["q_running"]) == [(running, 1)]

    retrying = enqueue(conn, queue="q_retry")
    assert fail(conn, W1, claim(conn, queues=["q_retry"])) == [(retrying, "retrying")]

    succeeded = enqueue(conn, queue="q_ok")
    assert complete(conn, W1, claim(conn, queues=["q_ok"]), [{"ok": True}]) == [succeeded]

    failed = enqueue(conn, queue="q_dead", max_attempts=1)
    assert fail(conn, W1, claim(conn, queues=["q_dead"])) == [(failed, "failed")]

    cancelled = enqueue(conn, queue="q_cancel")
    assert one(conn, "SELECT skiplock.cancel_job(%s)", (cancelled,)) == "cancelled"

    statuses = dict(conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall())
    assert statuses == {
        queued: "queued",
        scheduled: "scheduled",
        running: "running",
        retrying: "retrying",
        succeeded: "succeeded",
        failed: "failed",
        cancelled: "cancelled",
    }
    assert one(conn, "SELECT result FROM skiplock.all_jobs WHERE id = %s", (succeeded,)) == {
        "ok": True
    }
    # each job lives in exactly one table
    hot = {r[0] for r in conn.execute("SELECT id FROM skiplock.jobs")}
    history = dict(conn.execute("SELECT id, status::text FROM skiplock.job_history").fetchall())
    dead = {r[0] for r in conn.execute("SELECT id FROM skiplock.dead_jobs")}
    assert hot == {queued, scheduled, running, retrying}
    assert history == {succeeded: "succeeded", cancelled: "cancelled"}
    assert dead == {failed}
    letter = conn.execute(
        "SELECT task, queue, attempt, last_error FROM skiplock.dead_letters WHERE id = %s",
        (failed,),
    ).fetchone()
    assert letter == ("t", "q_dead", 1, "boom")


def test_enqueue_many_returns_ids_in_input_order(conn: psycopg.Connection) -> None:
    jobs = [
        {"task": "c", "queue": "z", "priority": -5},
        {"task": "a", "args": {"n": 1}, "priority": 50},
        {"task": "b", "delay": 60, "timeout": 5, "tags": ["x"], "meta": {"m": 1}},
        {"task": "d", "retry_policy": {"kind": "linear"}, "max_attempts": 2},
    ]
    ids = [r[0] for r in conn.execute("SELECT skiplock.enqueue_many(%s)", (Jsonb(jobs),))]
    assert len(ids) == 4
    tasks = [one(conn, "SELECT task FROM skiplock.jobs WHERE id = %s", (i,)) for i in ids]
    assert tasks == ["c", "a", "b", "d"]
    row = conn.execute(
        "SELECT timeout, tags, meta, run_at > now() FROM skiplock.jobs WHERE id = %s", (ids[2],)
    ).fetchone()
    assert row == (timedelta(seconds=5), ["x"], {"m": 1}, True)
    assert status(conn, ids[2]) == "scheduled"


def test_enqueue_many_one_bad_job_rejects_all(conn: psycopg.Connection) -> None:
    jobs = [{"task": "ok"}, {"task": "ok", "queue": "bad queue!"}, {"task": "ok"}]
    with pytest.raises(errors.CheckViolation, match="queue_name_valid"):
        conn.execute("SELECT skiplock.enqueue_many(%s)", (Jsonb(jobs),))
    assert job_count(conn) == 0
    with pytest.raises(errors.CheckViolation, match="args_is_object"):
        conn.execute("SELECT skiplock.enqueue_many(%s)", (Jsonb([{"task": "a", "args": [1]}]),))
    assert job_count(conn) == 0


BAD_ENQUEUES = [
    pytest.param(
        "SELECT skiplock.enqueue('t', queue => 'no spaces')", "queue_name_valid", id="queue"
    ),
    pytest.param("SELECT skiplock.enqueue('t', queue => '')", "queue_name_valid", id="empty-queue"),
    pytest.param("SELECT skiplock.enqueue('bad task!')", "task_name_valid", id="task"),
    pytest.param("SELECT skiplock.enqueue('')", "task_name_valid", id="empty-task"),
    pytest.param("SELECT skiplock.enqueue('t', '[1, 2]')", "args_is_object", id="args-array"),
    pytest.param("SELECT skiplock.enqueue('t', '\"x\"')", "args_is_object", id="args-string"),
    pytest.param(
        "SELECT skiplock.enqueue('t', '{\"a\": \"\\u0000\"}')",
        "unsupported Unicode escape sequence",
        id="nul-in-args",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '{\"tries\": 3}')",
        "retry_policy_valid",
        id="policy-unknown-key",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '{\"kind\": \"random\"}')",
        "retry_policy_valid",
        id="policy-kind",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '{\"base\": -1}')",
        "retry_policy_valid",
        id="policy-negative-base",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '{\"jitter\": 1.5}')",
        "retry_policy_valid",
        id="policy-jitter",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '{\"base\": \"1\"}')",
        "retry_policy_valid",
        id="policy-base-string",
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', retry_policy => '[]')",
        "retry_policy_valid",
        id="policy-array",
    ),
    pytest.param("SELECT skiplock.enqueue('t', priority => 101)", "priority_in_range", id="prio"),
    pytest.param("SELECT skiplock.enqueue('t', priority => -101)", "priority_in_range", id="prio-"),
    pytest.param("SELECT skiplock.enqueue('t', priority => 40000)", "out of range", id="prio-big"),
    pytest.param(
        "SELECT skiplock.enqueue('t', max_attempts => 0)", "max_attempts_positive", id="attempts"
    ),
    pytest.param(
        "SELECT skiplock.enqueue('t', timeout => interval '-1 second')",
        "timeout_positive",
        id="timeout",
    ),
    pytest.param("SELECT skiplock.enqueue(NULL)", "task", id="null-task"),
    pytest.param(
        'SELECT skiplock.insert_jobs(\'[{}]\', \'{"task": "t", "queues": "a", "delay": 1}\')',
        r"unknown option\(s\) delay, queues\n",
        id="insert-jobs-unknown-options",
    ),
    pytest.param(
        'SELECT skiplock.insert_jobs(\'[{}]\', \'{"task": "t", "queue": "a", "x": 1}\')',
        r"unknown option\(s\) x\n",
        id="insert-jobs-one-unknown-beside-known",
    ),
]


@pytest.mark.parametrize(("sql", "message"), BAD_ENQUEUES)
def test_bad_input_raises_and_writes_nothing(
    conn: psycopg.Connection, sql: str, message: str
) -> None:
    queues_before = conn.execute("SELECT name FROM skiplock.queues ORDER BY name").fetchall()
    with pytest.raises(psycopg.DatabaseError, match=message):
        conn.execute(sql)
    assert job_count(conn) == 0
    assert conn.execute("SELECT name FROM skiplock.queues ORDER BY name").fetchall() == (
        queues_before
    )


def test_nul_in_args_rejected_through_parameters(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.UntranslatableCharacter):
        conn.execute("SELECT skiplock.enqueue('t', %s)", (Jsonb({"a": "\x00"}),))
    assert job_count(conn) == 0


def test_retry_policy_is_valid(conn: psycopg.Connection) -> None:
    def valid(policy: Any) -> bool:
        return one(conn, "SELECT skiplock.retry_policy_is_valid(%s)", (Jsonb(policy),))

    assert valid({})
    assert valid({"kind": "linear", "base": 2.5, "max_delay": 60, "jitter": 0})
    assert valid({"kind": "fixed", "jitter": 1})
    assert not valid({"kind": "exponential", "factor": 2})
    assert not valid({"kind": "random"})
    assert not valid({"base": -1})
    assert not valid({"max_delay": -1})
    assert not valid({"jitter": 1.01})
    assert not valid({"jitter": -0.1})
    assert not valid([])


# --- wake-ups ------------------------------------------------------------------------


def test_plain_insert_notifies_once_per_statement(
    conn: psycopg.Connection, connect: Connect
) -> None:
    listener = listen(connect, "skiplock_jobs")
    conn.execute(
        "INSERT INTO skiplock.jobs (task, args)"
        " SELECT 'bulk', jsonb_build_object('n', n) FROM generate_series(1, 1000) n"
    )
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["default"]
    assert one(conn, "SELECT count(*) FROM skiplock.all_jobs WHERE status = 'queued'") == 1000

    # identical payloads in one transaction fold into one NOTIFY anyway, so prove the
    # per-statement shape with two queues in one statement, and in the catalog
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue)"
        " SELECT 'bulk', q FROM unnest('{b,a,b,a}'::text[]) q"
    )
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["a,b"]
    row_level = one(
        conn,
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'skiplock.jobs'::regclass"
        " AND NOT tgisinternal AND (tgtype & 1) = 1",
    )
    assert row_level == 0


# The two calls that do the insert trigger's work for their own INSERT: the statement of
# one call (queue, priority, run_at as parameters) and of one from a trigger, with the
# jobs each puts in.
OWN_BOOKKEEPING = {
    "enqueue": (
        "SELECT skiplock.enqueue('t', queue => %(queue)s, priority => %(priority)s::int,"
        " run_at => %(run_at)s::timestamptz)",
        "PERFORM skiplock.enqueue('welcome', queue => 'from_trigger')",
        1,
    ),
    "insert_jobs": (
        "SELECT skiplock.insert_jobs('[{}, {}]', jsonb_strip_nulls(jsonb_build_object("
        "'task', 't', 'queue', %(queue)s::text, 'priority', %(priority)s::int,"
        " 'run_at', %(run_at)s::timestamptz)))",
        'PERFORM skiplock.insert_jobs(\'[{}, {}]\', \'{"task": "welcome",'
        ' "queue": "from_trigger"}\')',
        2,
    ),
}


@pytest.mark.parametrize("way", OWN_BOOKKEEPING)
def test_enqueue_counts_registers_and_wakes_once_wherever_it_is_called(
    conn: psycopg.Connection, connect: Connect, way: str
) -> None:
    """enqueue, and insert_jobs for one task, do the insert trigger's work for their own
    INSERT, which the trigger then skips: once at top level, once when called from a
    trigger (where the insert trigger does it instead), and a plain INSERT after it in
    the same transaction is the trigger's again."""
    statement, from_trigger, jobs = OWN_BOOKKEEPING[way]
    listener = listen(connect, "skiplock_jobs")

    def put(queue: str, priority: int | None = None, run_at: datetime | None = None) -> None:
        conn.execute(statement, {"queue": queue, "priority": priority, "run_at": run_at})

    def created(queue: str) -> int:
        return one(
            conn,
            "SELECT coalesce(sum(n), 0) FROM skiplock.job_counts"
            " WHERE event = 'created' AND queue = %s",
            (queue,),
        )

    with conn.transaction():
        put("top")
        conn.execute("INSERT INTO skiplock.jobs (task, queue) VALUES ('t', 'after')")
        put("later", run_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["top", "after"]
    assert (created("top"), created("after"), created("later")) == (jobs, 1, jobs)

    # a call whose INSERT fails leaves the next plain INSERT to the trigger
    with conn.transaction():
        with pytest.raises(errors.CheckViolation), conn.transaction():
            put("refused", priority=1_001)
        conn.execute("INSERT INTO skiplock.jobs (task, queue) VALUES ('t', 'after_error')")
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["after_error"]
    assert (created("refused"), created("after_error")) == (0, 1)

    conn.execute("CREATE TABLE public.signups (email text)")
    conn.execute(
        "CREATE FUNCTION public.welcome() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN {from_trigger}; RETURN NEW; END $$"
    )
    conn.execute(
        "CREATE TRIGGER welcome AFTER INSERT ON public.signups"
        " FOR EACH ROW EXECUTE FUNCTION public.welcome()"
    )
    conn.execute("INSERT INTO public.signups VALUES ('ada@example.com')")
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["from_trigger"]
    assert created("from_trigger") == jobs
    registered = conn.execute(
        "SELECT name FROM skiplock.queues WHERE name IN ('top', 'after', 'later', 'from_trigger')"
        " ORDER BY name"
    ).fetchall()
    assert registered == [("after",), ("from_trigger",), ("later",), ("top",)]


def test_insert_registers_only_new_queues(conn: psycopg.Connection, connect: Connect) -> None:
    conn.execute("INSERT INTO skiplock.queues (name, max_running) VALUES ('known', 3)")
    listener = listen(connect, "skiplock_jobs")
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue)"
        " SELECT t, q FROM unnest('{known,fresh,known,other}'::text[]) q, unnest('{a,b}'::text[]) t"
    )
    rows = conn.execute("SELECT name, max_running FROM skiplock.queues ORDER BY name").fetchall()
    assert rows == [("fresh", None), ("known", 3), ("other", None)]
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["fresh,known,other"]
    created = conn.execute(
        "SELECT queue, sum(n) FROM skiplock.job_counts WHERE event = 'created'"
        " GROUP BY queue ORDER BY queue"
    ).fetchall()
    assert created == [("fresh", 2), ("known", 4), ("other", 2)]

    # A queue another transaction is registering counts as new: the insert waits for
    # that transaction and both commit, with one row for the queue.
    first, other = connect(), connect(autocommit=True)
    first.execute("SELECT skiplock.enqueue('t', queue => 'racing')")
    second = threading.Thread(
        target=other.execute, args=("SELECT skiplock.enqueue('t', queue => 'racing')",)
    )
    second.start()
    wait_until(
        lambda: one(
            conn,
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
            (other.info.backend_pid,),
        )
    )
    first.commit()
    second.join(10)
    assert not second.is_alive()
    assert one(conn, "SELECT count(*) FROM skiplock.queues WHERE name = 'racing'") == 1
    assert one(conn, "SELECT count(*) FROM skiplock.jobs WHERE queue = 'racing'") == 2


def test_enqueue_and_enqueue_many_notify(conn: psycopg.Connection, connect: Connect) -> None:
    listener = listen(connect, "skiplock_jobs")
    enqueue(conn, queue="emails")
    jobs = [{"task": "x", "queue": "q1"}] * 50 + [{"task": "x", "queue": "q2"}] * 50
    conn.execute("SELECT skiplock.enqueue_many(%s)", (Jsonb(jobs),))
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["emails", "q1,q2"]


def test_scheduled_insert_does_not_notify(conn: psycopg.Connection, connect: Connect) -> None:
    listener = listen(connect, "skiplock_jobs")
    conn.execute(
        "INSERT INTO skiplock.jobs (task, run_at) VALUES ('later', now() + interval '1 hour')"
    )
    enqueue(conn, delay=timedelta(minutes=5))
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == []
    assert job_count(conn) == 2


def test_transactional_enqueue(conn: psycopg.Connection, connect: Connect) -> None:
    listener = listen(connect, "skiplock_jobs")
    tx = connect()  # not autocommit: enqueue joins the open transaction
    tx.execute("SELECT skiplock.enqueue('in_tx')")
    tx.rollback()
    assert job_count(conn) == 0
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == []

    job_id = one(tx, "SELECT skiplock.enqueue('in_tx')")
    assert status(conn, job_id) is None  # not visible before commit
    tx.commit()
    assert status(conn, job_id) == "queued"
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["default"]


# --- claiming ------------------------------------------------------------------------


def test_claim_order_and_result(conn: psycopg.Connection) -> None:
    low = enqueue(conn, "low", priority=-1, args={"a": 1})
    first = enqueue(conn, "first")
    high = enqueue(conn, "high", priority=10)
    second = enqueue(conn, "second")
    rows = conn.execute(
        "SELECT id, task, args, queue, attempt FROM skiplock.claim_jobs(%s, '{default}', 3)",
        (W1,),
    ).fetchall()
    # the highest priority, then the oldest; the rows come back in no particular order
    assert sorted(r[0] for r in rows) == sorted([high, first, second])
    assert {r[0]: r[1:] for r in rows}[high] == ("high", {}, "default", 1)
    assert claim(conn) == [(low, 1)]
    assert claim(conn) == []
    lease = one(
        conn,
        "SELECT lease_expires_at - started_at FROM skiplock.jobs WHERE id = %s",
        (low,),
    )
    assert lease == timedelta(seconds=30)


def test_claim_skips_scheduled_until_due(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, delay=timedelta(hours=1))
    assert claim(conn) == []
    assert claim(conn, now=T0) == [(job_id, 1)]


def test_exactly_once_claiming_across_8_connections(
    conn: psycopg.Connection, connect: Connect
) -> None:
    conn.execute(
        "INSERT INTO skiplock.jobs (task, priority)"
        " SELECT 'race', (n % 7) - 3 FROM generate_series(1, 2000) n"
    )
    expected = sorted(r[0] for r in conn.execute("SELECT id FROM skiplock.jobs"))
    claimers = [connect(autocommit=True) for _ in range(8)]
    barrier = threading.Barrier(len(claimers))
    claimed: list[list[int]] = [[] for _ in claimers]
    failures: list[BaseException] = []

    def run(index: int, c: psycopg.Connection) -> None:
        worker = uuid.uuid4()
        try:
            barrier.wait(timeout=30)
            while batch := claim(c, worker, limit=25):
                claimed[index].extend(i for i, _ in batch)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures, failures
    every = [i for ids in claimed for i in ids]
    assert len(every) == len(set(every)), "a job was claimed twice"
    assert sorted(every) == expected
    assert one(conn, "SELECT count(*) FROM skiplock.jobs WHERE state = 'running'") == 2000


def test_skip_locked_never_blocks(conn: psycopg.Connection, connect: Connect) -> None:
    conn.execute("INSERT INTO skiplock.jobs (task) SELECT 'x' FROM generate_series(1, 12)")
    a = connect()  # stays inside an open transaction
    b = connect(autocommit=True)
    b.execute("SET lock_timeout = '1s'")  # a blocked claim would raise LockNotAvailable
    a_ids = {i for i, _ in claim(a, W1, limit=5)}
    assert len(a_ids) == 5
    b_ids = {i for i, _ in claim(b, W2, limit=5)}
    assert len(b_ids) == 5
    assert not a_ids & b_ids
    # the rest, without waiting on A's locks
    assert len(claim(b, W2, limit=100)) == 2
    assert claim(b, W2, limit=100) == []
    a.rollback()
    assert {i for i, _ in claim(b, W2, limit=100)} == a_ids


# --- fencing -------------------------------------------------------------------------


def test_fencing_after_rescue(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, max_attempts=5)
    assert claim(conn, W1, lease="1 second") == [(job_id, 1)]

    rescued = conn.execute(
        "SELECT id, status FROM skiplock.rescue_expired_jobs(p_now => now() + interval '1 minute')"
    ).fetchall()
    assert rescued == [(job_id, "retrying")]
    assert status(conn, job_id) == "retrying"
    last = one(conn, "SELECT last_error FROM skiplock.all_jobs WHERE id = %s", (job_id,))
    assert last["type"] == "LeaseExpired"
    assert last["attempt"] == 1
    assert last["worker_id"] == str(W1)

    assert claim(conn, W2, now=T0) == [(job_id, 2)]
    before = conn.execute("SELECT * FROM skiplock.jobs WHERE id = %s", (job_id,)).fetchone()

    # w1 lost the lease: nothing it does changes the job, whatever token it presents
    for token in [(W1, 1), (W1, 2), (W2, 1)]:
        worker, attempt = token
        assert complete(conn, worker, [(job_id, attempt)], [{"late": True}]) == []
        assert fail(conn, worker, [(job_id, attempt)]) == []
        released = conn.execute(
            "SELECT * FROM skiplock.release_jobs(%s, %s, %s)", (worker, [job_id], [attempt])
        ).fetchall()
        assert released == []
        assert (
            one(
                conn,
                "SELECT skiplock.set_job_progress(%s, %s, %s, 0.5, 'late')",
                (worker, job_id, attempt),
            )
            is False
        )
    assert (
        conn.execute(
            "SELECT * FROM skiplock.heartbeat_jobs(%s, %s, %s)", (W1, [job_id], [1])
        ).fetchall()
        == []
    )
    after = conn.execute("SELECT * FROM skiplock.jobs WHERE id = %s", (job_id,)).fetchone()
    assert after == before

    # the current owner is unaffected
    hb = conn.execute(
        "SELECT * FROM skiplock.heartbeat_jobs(%s, %s, %s)", (W2, [job_id], [2])
    ).fetchall()
    assert hb == [(job_id, False)]
    assert complete(conn, W2, [(job_id, 2)], [{"by": "w2"}]) == [job_id]
    assert status(conn, job_id) == "succeeded"
    # completing twice is a no-op
    assert complete(conn, W2, [(job_id, 2)], [{"by": "again"}]) == []
    assert conn.execute("SELECT result, attempt FROM skiplock.job_history").fetchall() == [
        ({"by": "w2"}, 2)
    ]


def test_complete_batch_only_completes_owned_jobs(conn: psycopg.Connection) -> None:
    a = enqueue(conn)
    b = enqueue(conn)
    c = enqueue(conn)
    assert claim(conn, W1, limit=2) == [(a, 1), (b, 1)]
    assert claim(conn, W2) == [(c, 1)]
    done = complete(conn, W1, [(a, 1), (b, 1), (c, 1)], [{"n": 1}, None, {"n": 3}])
    assert sorted(done) == [a, b]
    results = dict(conn.execute("SELECT id, result FROM skiplock.job_history").fetchall())
    assert results == {a: {"n": 1}, b: None}
    assert status(conn, c) == "running"


# --- retries and dead letters --------------------------------------------------------


def delays(conn: psycopg.Connection, policy: dict[str, Any], attempts: range) -> list[float]:
    rows = conn.execute(
        "SELECT extract(epoch FROM skiplock.retry_delay(%s, a))::float8 FROM unnest(%s::int[]) a",
        (Jsonb(policy), list(attempts)),
    )
    return [r[0] for r in rows]


def test_retry_delay_without_jitter(conn: psycopg.Connection) -> None:
    exponential = {"kind": "exponential", "base": 1, "max_delay": 20, "jitter": 0}
    assert delays(conn, exponential, range(1, 8)) == [1, 2, 4, 8, 16, 20, 20]
    assert delays(conn, {"base": 3, "jitter": 0}, range(1, 4)) == [3, 6, 12]
    assert delays(conn, {"base": 1, "jitter": 0}, range(1000, 1001)) == [3600]  # default cap
    linear = {"kind": "linear", "base": 5, "max_delay": 12, "jitter": 0}
    assert delays(conn, linear, range(1, 5)) == [5, 10, 12, 12]
    fixed = {"kind": "fixed", "base": 7, "jitter": 0}
    assert delays(conn, fixed, range(1, 4)) == [7, 7, 7]


def test_retry_delay_with_jitter_stays_in_range(conn: psycopg.Connection) -> None:
    policy = {"kind": "exponential", "base": 2, "jitter": 0.5}
    samples = [
        r[0]
        for r in conn.execute(
            "SELECT extract(epoch FROM skiplock.retry_delay(%s, 3))::float8"
            " FROM generate_series(1, 200)",
            (Jsonb(policy),),
        )
    ]
    assert len(samples) == 200
    assert all(4.0 <= s <= 8.0 for s in samples), (min(samples), max(samples))
    assert len(set(samples)) > 1  # the jitter is applied per call
    # the default policy: exponential from 1 s with 10 % jitter
    default = one(conn, "SELECT extract(epoch FROM skiplock.retry_delay(NULL, 2))::float8")
    assert 1.8 <= default <= 2.0


def test_fail_retry_in_overrides_policy(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, retry_policy={"kind": "fixed", "base": 1000, "jitter": 0})
    token = claim(conn, now=T0)
    assert fail(conn, W1, token, {"error": "busy", "retry_in": 30}, now=T0) == [
        (job_id, "retrying")
    ]
    assert one(conn, "SELECT run_at FROM skiplock.jobs WHERE id = %s", (job_id,)) == (
        T0 + timedelta(seconds=30)
    )
    entry = one(conn, "SELECT errors -> -1 FROM skiplock.jobs WHERE id = %s", (job_id,))
    assert entry == {"attempt": 1, "at": entry["at"], "worker_id": str(W1), "error": "busy"}

    # without p_now the delay counts from the database's now()
    token = claim(conn, now=T0 + timedelta(minutes=1))
    before = one(conn, "SELECT now()")
    fail(conn, W1, token, {"error": "busy", "retry_in": 30})
    after = one(conn, "SELECT now()")
    run_at = one(conn, "SELECT run_at FROM skiplock.jobs WHERE id = %s", (job_id,))
    assert before + timedelta(seconds=30) <= run_at <= after + timedelta(seconds=30)

    # and without retry_in the policy decides
    token = claim(conn, now=T0 + timedelta(hours=1))
    fail(conn, W1, token, {"error": "busy"}, now=T0 + timedelta(hours=1))
    assert one(conn, "SELECT run_at FROM skiplock.jobs WHERE id = %s", (job_id,)) == (
        T0 + timedelta(hours=1, seconds=1000)
    )


def test_fail_retry_false_dead_letters_at_once(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, max_attempts=10)
    token = claim(conn)
    assert fail(conn, W1, token, {"error": "bad input", "retry": False}) == [(job_id, "failed")]
    row = conn.execute(
        "SELECT attempt, errors FROM skiplock.dead_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row is not None
    assert row[0] == 1
    assert [e["error"] for e in row[1]] == ["bad input"]
    assert "retry" not in row[1][0]
    assert one(conn, "SELECT count(*) FROM skiplock.jobs") == 0


def test_dead_letter_after_exhaustion(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, max_attempts=3)
    outcomes = []
    for attempt in range(1, 4):
        at = T0 + timedelta(days=attempt)  # past any run_at the previous failure set
        token = claim(conn, now=at)
        assert token == [(job_id, attempt)]
        outcomes += fail(conn, W1, token, {"error": f"boom {attempt}"}, now=at)
    assert outcomes == [(job_id, "retrying"), (job_id, "retrying"), (job_id, "failed")]
    assert status(conn, job_id) == "failed"
    assert one(conn, "SELECT count(*) FROM skiplock.jobs") == 0
    errs = one(conn, "SELECT errors FROM skiplock.dead_jobs WHERE id = %s", (job_id,))
    assert [(e["attempt"], e["error"]) for e in errs] == [
        (1, "boom 1"),
        (2, "boom 2"),
        (3, "boom 3"),
    ]
    assert one(conn, "SELECT last_error FROM skiplock.dead_letters WHERE id = %s", (job_id,)) == (
        "boom 3"
    )
    stats = conn.execute(
        "SELECT failed, retrying, queued FROM skiplock.queue_stats WHERE queue = 'default'"
    ).fetchone()
    assert stats == (1, 0, 0)


def test_rescue_of_last_attempt_dead_letters(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, max_attempts=1)
    claim(conn, W1, lease="1 second")
    assert conn.execute(
        "SELECT id, status FROM skiplock.rescue_expired_jobs(p_now => now() + interval '1 minute')"
    ).fetchall() == [(job_id, "failed")]
    assert status(conn, job_id) == "failed"
    last = one(conn, "SELECT errors -> -1 FROM skiplock.dead_jobs WHERE id = %s", (job_id,))
    assert last["type"] == "LeaseExpired"


def test_rescue_leaves_live_leases_alone(conn: psycopg.Connection) -> None:
    live = enqueue(conn)
    claim(conn, W1, lease="1 hour")
    expired = enqueue(conn)
    claim(conn, W2, lease="1 second")
    rescued = conn.execute(
        "SELECT id, status FROM skiplock.rescue_expired_jobs(p_now => now() + interval '1 minute')"
    ).fetchall()
    assert rescued == [(expired, "retrying")]
    assert status(conn, live) == "running"
    assert conn.execute("SELECT * FROM skiplock.rescue_expired_jobs()").fetchall() == []


def test_release_does_not_count_the_attempt(conn: psycopg.Connection, connect: Connect) -> None:
    job_id = enqueue(conn, queue="emails")
    token = claim(conn, queues=["emails"])
    listener = listen(connect, "skiplock_jobs")
    released = conn.execute(
        "SELECT * FROM skiplock.release_jobs(%s, %s, %s)", (W1, [job_id], [1])
    ).fetchall()
    assert released == [(job_id,)]
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["emails"]
    row = conn.execute(
        "SELECT status, attempt, worker_id FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert row == ("queued", 0, None)
    # released twice: the token is gone
    assert (
        conn.execute(
            "SELECT * FROM skiplock.release_jobs(%s, %s, %s)", (W1, [job_id], [1])
        ).fetchall()
        == []
    )
    assert claim(conn, W2, queues=["emails"]) == [(job_id, token[0][1])]


# --- cancel and retry ----------------------------------------------------------------


def test_cancel_queued_job(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    scheduled = enqueue(conn, delay=timedelta(days=1))
    assert one(conn, "SELECT skiplock.cancel_job(%s)", (job_id,)) == "cancelled"
    assert one(conn, "SELECT skiplock.cancel_job(%s)", (scheduled,)) == "cancelled"
    history = conn.execute(
        "SELECT id, status::text FROM skiplock.job_history ORDER BY id"
    ).fetchall()
    assert history == [(job_id, "cancelled"), (scheduled, "cancelled")]
    assert claim(conn, now=T0) == []


def test_cancel_running_job(conn: psycopg.Connection, connect: Connect) -> None:
    job_id = enqueue(conn)
    token = claim(conn)
    listener = listen(connect, "skiplock_cancel")
    assert one(conn, "SELECT skiplock.cancel_job(%s)", (job_id,)) == "running"
    assert notifications_until_sentinel(listener, conn, "skiplock_cancel") == [str(job_id)]
    assert status(conn, job_id) == "running"
    assert one(
        conn, "SELECT cancel_requested_at IS NOT NULL FROM skiplock.jobs WHERE id = %s", (job_id,)
    )
    hb = conn.execute(
        "SELECT * FROM skiplock.heartbeat_jobs(%s, %s, %s)", (W1, [job_id], [1])
    ).fetchall()
    assert hb == [(job_id, True)]
    # the handler stops and reports the failure: the job ends cancelled, not retried
    assert fail(conn, W1, token, {"error": "cancelled", "type": "CancelledError"}) == [
        (job_id, "cancelled")
    ]
    assert status(conn, job_id) == "cancelled"
    errs = one(conn, "SELECT errors FROM skiplock.job_history WHERE id = %s", (job_id,))
    assert [e["type"] for e in errs] == ["CancelledError"]


def test_cancel_running_job_that_finishes_first(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    token = claim(conn)
    one(conn, "SELECT skiplock.cancel_job(%s)", (job_id,))
    assert complete(conn, W1, token, [{"done": True}]) == [job_id]
    assert status(conn, job_id) == "succeeded"


def test_cancel_unknown_or_finished_job(conn: psycopg.Connection) -> None:
    assert one(conn, "SELECT skiplock.cancel_job(123456)") is None
    ok = enqueue(conn)
    complete(conn, W1, claim(conn))
    dead = enqueue(conn, max_attempts=1)
    fail(conn, W1, claim(conn))
    gone = enqueue(conn)
    one(conn, "SELECT skiplock.cancel_job(%s)", (gone,))
    for job_id, expected in [(ok, "succeeded"), (dead, "failed"), (gone, "cancelled")]:
        assert one(conn, "SELECT skiplock.cancel_job(%s)", (job_id,)) == expected
        assert status(conn, job_id) == expected
    assert one(conn, "SELECT count(*) FROM skiplock.job_history") == 2
    assert one(conn, "SELECT count(*) FROM skiplock.dead_jobs") == 1


def test_retry_dead_job(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn, "again", args={"a": 1}, max_attempts=1, priority=3)
    fail(conn, W1, claim(conn), {"error": "first"})
    assert status(conn, job_id) == "failed"
    assert one(conn, "SELECT skiplock.retry_job(%s)", (job_id,)) == "queued"
    row = conn.execute(
        "SELECT status, attempt, task, args, priority, max_attempts, errors"
        " FROM skiplock.all_jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row is not None
    assert row[:6] == ("queued", 0, "again", {"a": 1}, 3, 1)
    assert [e["error"] for e in row[6]] == ["first"]
    assert one(conn, "SELECT count(*) FROM skiplock.dead_jobs") == 0
    assert claim(conn) == [(job_id, 1)]


def test_retry_succeeded_job(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    complete(conn, W1, claim(conn), [{"v": 1}])
    assert one(conn, "SELECT skiplock.retry_job(%s)", (job_id,)) == "queued"
    assert status(conn, job_id) == "queued"
    assert one(conn, "SELECT count(*) FROM skiplock.job_history") == 0
    assert claim(conn) == [(job_id, 1)]


def test_retry_running_unknown_and_scheduled(conn: psycopg.Connection) -> None:
    running = enqueue(conn)
    claim(conn)
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="is running"):
        conn.execute("SELECT skiplock.retry_job(%s)", (running,))
    assert status(conn, running) == "running"
    assert one(conn, "SELECT skiplock.retry_job(987654)") is None

    scheduled = enqueue(conn, delay=timedelta(days=1))
    assert status(conn, scheduled) == "scheduled"
    assert one(conn, "SELECT skiplock.retry_job(%s)", (scheduled,)) == "queued"
    assert status(conn, scheduled) == "queued"
    assert claim(conn) == [(scheduled, 1)]


def test_retry_retrying_job_reports_its_status(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    fail(conn, W1, claim(conn), {"error": "x", "retry_in": 3600})
    assert claim(conn) == []
    assert one(conn, "SELECT skiplock.retry_job(%s)", (job_id,)) == status(conn, job_id)
    assert status(conn, job_id) == "retrying"
    assert claim(conn) == [(job_id, 2)]


# --- queues, progress, workers -------------------------------------------------------


def test_paused_queue(conn: psycopg.Connection, connect: Connect) -> None:
    job_id = enqueue(conn)
    other = enqueue(conn, queue="other")
    assert one(conn, "SELECT skiplock.pause_queue('default')") is True
    assert one(conn, "SELECT paused FROM skiplock.queue_stats WHERE queue = 'default'") is True
    assert claim(conn, queues=["default", "other"]) == [(other, 1)]
    assert claim(conn) == []
    listener = listen(connect, "skiplock_jobs")
    assert one(conn, "SELECT skiplock.resume_queue('default')") is True
    assert notifications_until_sentinel(listener, conn, "skiplock_jobs") == ["default"]
    assert claim(conn) == [(job_id, 1)]
    assert one(conn, "SELECT skiplock.pause_queue('never_seen')") is False
    assert one(conn, "SELECT skiplock.resume_queue('never_seen')") is False


def test_set_job_progress(conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    [(_, attempt)] = claim(conn)
    assert (
        one(
            conn,
            "SELECT skiplock.set_job_progress(%s, %s, %s, 0.25, 'a quarter')",
            (W1, job_id, attempt),
        )
        is True
    )
    progress = one(conn, "SELECT progress FROM skiplock.all_jobs WHERE id = %s", (job_id,))
    assert progress["fraction"] == 0.25
    assert progress["message"] == "a quarter"
    with pytest.raises(errors.InvalidParameterValue, match="between 0 and 1"):
        conn.execute(
            "SELECT skiplock.set_job_progress(%s, %s, %s, 1.5, 'too far')", (W1, job_id, attempt)
        )
    progress = one(conn, "SELECT progress FROM skiplock.all_jobs WHERE id = %s", (job_id,))
    assert progress["fraction"] == 0.25
    complete(conn, W1, [(job_id, attempt)])
    # progress is kept in the history
    assert one(
        conn, "SELECT progress ->> 'message' FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ) == ("a quarter")


def test_queue_stats_counts(conn: psycopg.Connection) -> None:
    q = ["mix"]
    succeeded = enqueue(conn, queue="mix")
    complete(conn, W1, claim(conn, queues=q, limit=1))
    failed = enqueue(conn, queue="mix", max_attempts=1)
    fail(conn, W1, claim(conn, queues=q, limit=1))
    retrying = enqueue(conn, queue="mix")
    fail(conn, W1, claim(conn, queues=q, limit=1), {"error": "later", "retry_in": 3600})
    running = enqueue(conn, queue="mix")
    assert claim(conn, queues=q, limit=1) == [(running, 1)]
    cancelled = enqueue(conn, queue="mix")
    one(conn, "SELECT skiplock.cancel_job(%s)", (cancelled,))
    enqueue(conn, queue="mix")
    enqueue(conn, queue="mix")
    enqueue(conn, queue="mix", delay=timedelta(hours=1))
    enqueue(conn, queue="elsewhere")
    assert {status(conn, i) for i in (succeeded, failed, retrying)} == {
        "succeeded",
        "failed",
        "retrying",
    }

    row = conn.execute(
        "SELECT paused, waiting, scheduled, queued, running, retrying, succeeded, failed,"
        " cancelled, expired FROM skiplock.queue_stats WHERE queue = 'mix'"
    ).fetchone()
    assert row == (False, 0, 1, 2, 1, 1, 1, 1, 1, 0)
    assert one(conn, "SELECT queued FROM skiplock.queue_stats WHERE queue = 'elsewhere'") == 1
    by_status = dict(
        conn.execute(
            "SELECT status, count(*) FROM skiplock.all_jobs WHERE queue = 'mix' GROUP BY 1"
        ).fetchall()
    )
    assert by_status == {
        "succeeded": 1,
        "failed": 1,
        "retrying": 1,
        "running": 1,
        "cancelled": 1,
        "queued": 2,
        "scheduled": 1,
    }


def test_worker_registry_and_stats(conn: psycopg.Connection) -> None:
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'host-a', 4242, '{default}', 4, '0.1.0')", (W1,)
    )
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'host-b', 4343, '{default}', 2, '0.1.0')", (W2,)
    )
    enqueue(conn)
    enqueue(conn)
    ids = [i for i, _ in claim(conn, W1)]
    assert len(ids) == 2
    stats = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT id, host, pid, concurrency, running_jobs, alive FROM skiplock.worker_stats"
        )
    }
    assert stats == {W1: ("host-a", 4242, 4, 2, True), W2: ("host-b", 4343, 2, 0, True)}

    # a heartbeat keeps the worker alive; prune forgets the silent one
    conn.execute(
        "SELECT * FROM skiplock.heartbeat_jobs(%s, %s, %s, p_now => now() + interval '2 hours')",
        (W1, ids, [1] * len(ids)),
    )
    pruned = one(conn, "SELECT skiplock.prune_workers(p_now => now() + interval '2 hours')")
    assert pruned == 1
    assert [r[0] for r in conn.execute("SELECT id FROM skiplock.workers")] == [W1]
    conn.execute("SELECT skiplock.unregister_worker(%s)", (W1,))
    assert one(conn, "SELECT count(*) FROM skiplock.worker_stats") == 0


# --- query plan ----------------------------------------------------------------------

# The pick inside claim_jobs, as one plain statement with literal values.
CLAIM_SQL = """
UPDATE skiplock.jobs j
SET state = 'running', attempt = j.attempt + 1,
    worker_id = '00000000-0000-4000-8000-000000000001',
    started_at = now(), lease_expires_at = now() + interval '30 seconds', progress = NULL
WHERE j.id = ANY (ARRAY(
    SELECT picked.id
    FROM unnest('{default}'::text[]) AS q(name)
    CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.run_at
        FROM skiplock.jobs c
        WHERE c.queue = q.name AND c.state = 'queued' AND c.run_at <= now()
        ORDER BY c.priority DESC, c.run_at, c.id
        LIMIT 25
        FOR UPDATE SKIP LOCKED
    ) picked
    WHERE NOT EXISTS (SELECT 1 FROM skiplock.queues pq WHERE pq.name = q.name AND pq.paused)
    ORDER BY picked.priority DESC, picked.run_at, picked.id
    LIMIT 25))
RETURNING j.id
"""


def seed_for_plans(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, priority)"
        " SELECT 'plan', q, (n % 5)::smallint"
        " FROM generate_series(1, 5000) n, unnest('{default,other}'::text[]) q"
    )
    # some finished-looking load in the hot table too: running and scheduled rows
    conn.execute(
        "UPDATE skiplock.jobs SET state = 'running', worker_id = %s,"
        " lease_expires_at = now() + interval '1 hour', attempt = 1 WHERE id %% 10 = 0",
        (W2,),
    )
    conn.execute("ANALYZE skiplock.jobs")
    conn.execute("ANALYZE skiplock.queues")


def test_claim_plan_uses_claim_index(conn: psycopg.Connection) -> None:
    seed_for_plans(conn)
    plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + CLAIM_SQL))
    assert "jobs_claim_idx" in plan, plan
    assert "Seq Scan on jobs" not in plan, plan


def test_claim_function_plan_uses_claim_index(conn: psycopg.Connection) -> None:
    """The same check on the statement inside claim_jobs itself, through auto_explain."""
    seed_for_plans(conn)
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.Error as exc:  # not superuser, or the module is not installed
        pytest.skip(f"auto_explain unavailable: {exc}")
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
    claimed = claim(conn, W1, ["default"], 25)
    conn.execute("RESET auto_explain.log_min_duration")
    assert len(claimed) == 25
    inner = [p for p in plans if "UPDATE skiplock.jobs" in p]
    assert inner, plans
    assert "jobs_claim_idx" in inner[0], inner[0]
    assert "Seq Scan on jobs" not in inner[0], inner[0]


def test_claim_session_generic_plan_stays_an_index_plan(conn: psycopg.Connection) -> None:
    """The worker's claim session plans claim_jobs once (a generic plan) and keeps the
    plan while the table grows: made on an empty, never analyzed table, it must still
    walk jobs_claim_idx and probe the primary key on thousands of rows."""
    try:
        conn.execute("LOAD 'auto_explain'")
    except psycopg.Error as exc:  # not superuser, or the module is not installed
        pytest.skip(f"auto_explain unavailable: {exc}")
    store.set_claim_session().run(conn)
    conn.execute("SET auto_explain.log_min_duration = 0")
    conn.execute("SET auto_explain.log_nested_statements = on")
    conn.execute("SET auto_explain.log_level = notice")
    conn.execute("SET client_min_messages = notice")
    plans: list[str] = []
    conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))

    def claim_plan(expected: int) -> str:
        plans.clear()
        assert len(claim(conn, W1, ["default"], 25)) == expected
        inner = [p for p in plans if "UPDATE skiplock.jobs" in p]
        assert inner, plans
        return inner[0]

    claim_plan(0)  # planned, and the plan cached, on the empty table
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, priority)"
        " SELECT 'plan', q, (n % 5)::smallint"
        " FROM generate_series(1, 5000) n, unnest('{default,other}'::text[]) q"
    )
    for _ in range(2):  # the cached plan, then the one made after ANALYZE
        plan = claim_plan(25)
        assert "jobs_claim_idx" in plan, plan
        assert "jobs_pkey" in plan, plan
        assert "Seq Scan" not in plan, plan
        conn.execute("ANALYZE skiplock.jobs")
    # over two queues the claim first counts each queue's share: an index plan too
    plans.clear()
    assert len(claim(conn, W1, ["default", "other"], 25)) == 25
    reading_jobs = [p for p in plans if "FROM skiplock.jobs" in p]
    assert len(reading_jobs) >= 2, plans
    for plan in reading_jobs:
        assert "Seq Scan on jobs" not in plan, plan


def test_batch_functions_are_planned_per_call(conn: psycopg.Connection) -> None:
    # A generic plan cannot see array sizes; it joined 500 ids in a nested loop (9x slower).
    rows = conn.execute(
        "SELECT proname, proconfig FROM pg_proc"
        " WHERE pronamespace = 'skiplock'::regnamespace AND proname = ANY(%s)",
        (["heartbeat_jobs", "complete_jobs", "fail_jobs", "release_jobs", "_finish_jobs"],),
    ).fetchall()
    assert len(rows) == 5
    for name, config in rows:
        assert "plan_cache_mode=force_custom_plan" in config, name
