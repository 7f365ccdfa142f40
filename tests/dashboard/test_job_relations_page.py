"""A job's page beside the job itself: the jobs it waits on and those waiting on it,
each linked with its status, its workflow, its webhook deliveries, and its trace (a
link when the dashboard has a trace URL template, the id as text otherwise)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import psycopg
import pytest
from dashboard_checks import PASSWORD, add_user, log_in
from pages_checks import diamond
from starlette.testclient import TestClient

from skiplock.dashboard.job_relations import check_trace_url, trace_link
from skiplock.errors import ConfigError

W = "00000000-0000-0000-0000-0000000000ee"
HOOK = "https://example.com/hooks/skiplock"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def viewer(client: TestClient, conn: psycopg.Connection, queues: str | None = None) -> TestClient:
    add_user(conn, "ada", "read", queues)
    assert log_in(client, username="ada", password=PASSWORD).status_code == 303
    return client


def enqueue(conn: psycopg.Connection, sql_options: str = "", *params: object) -> int:
    row = conn.execute(f"SELECT skiplock.enqueue('t'{sql_options})", params).fetchone()
    assert row is not None
    return int(row[0])


def rows(html: str, table: str) -> list[list[str]]:
    """The words of each row of the table `table` (ids on every row), tags dropped."""
    body = html.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    found = re.findall(r"<tr id=[^>]*>(.*?)</tr>", body, re.S)
    return [re.sub(r"<[^>]+>", " ", row).split() for row in found]


def test_dependencies_both_ways_linked_with_their_status(
    client: TestClient, conn: psycopg.Connection
) -> None:
    viewer(client, conn)
    first, second = enqueue(conn), enqueue(conn)
    waiting = enqueue(conn, ", depends_on => %s::bigint[]", [first, second])

    html = client.get(f"/dashboard/jobs/{waiting}").text
    assert f'<a href="/dashboard/jobs/{first}">{first}</a>' in html
    assert rows(html, "job-dependencies") == [
        ["waits", "on", str(first), "t", "queued"],
        ["waits", "on", str(second), "t", "queued"],
    ]
    assert "If a dependency fails, this job: <code>fail</code>" in html

    upstream = client.get(f"/dashboard/jobs/{first}").text
    assert rows(upstream, "job-dependencies") == [
        ["waited", "on", "by", str(waiting), "t", "waiting"]
    ]
    plain = enqueue(conn)
    assert 'id="job-dependencies"' not in client.get(f"/dashboard/jobs/{plain}").text


def test_a_dependency_gone_from_the_history_is_said_so(
    client: TestClient, conn: psycopg.Connection
) -> None:
    viewer(client, conn)
    gone = enqueue(conn)
    conn.execute("SELECT skiplock.cancel_job(%s)", (gone,))
    conn.execute("SELECT skiplock.delete_job(%s)", (gone,))
    # a plain INSERT may name any id: the job waits on one no longer stored
    (job,) = conn.execute(
        "INSERT INTO skiplock.jobs (task, state, depends_on) VALUES ('t', 'waiting', %s)"
        " RETURNING id",
        ([gone],),
    ).fetchone()
    html = client.get(f"/dashboard/jobs/{job}").text
    assert rows(html, "job-dependencies") == [
        ["waits", "on", str(gone), "—", "no", "longer", "stored"]
    ]


def test_workflow_steps_link_their_workflow_parents_and_children(
    dsn: str, client: TestClient, conn: psycopg.Connection
) -> None:
    viewer(client, conn)
    workflow_id, jobs = diamond(dsn, fail=True)
    html = client.get(f"/dashboard/jobs/{jobs['left']}").text
    assert f'<a href="/dashboard/workflows/{workflow_id}" id="job-workflow">' in html
    assert "step <code>left</code>" in html
    # fetch succeeded long ago, so job_dependencies forgot merge's wait on left: the
    # workflow's steps still say it
    assert rows(html, "job-dependencies") == [
        ["waits", "on", str(jobs["fetch"]), "ok", "succeeded"],
        ["waited", "on", "by", str(jobs["merge"]), "ok", "failed"],
    ]


def test_a_queue_limited_login_sees_no_linked_job_of_another_queue(
    client: TestClient, conn: psycopg.Connection
) -> None:
    viewer(client, conn, queues="mine")
    other = enqueue(conn, ", queue => 'other'")
    mine = enqueue(conn, ", queue => 'mine', depends_on => %s::bigint[]", [other])
    html = client.get(f"/dashboard/jobs/{mine}").text
    assert f"/jobs/{other}" not in html and 'id="job-dependencies"' not in html


def test_webhook_deliveries_with_status_attempts_and_last_error(
    client: TestClient, conn: psycopg.Connection
) -> None:
    viewer(client, conn)
    job = enqueue(conn, ", callback_url => %s", HOOK)
    before = client.get(f"/dashboard/jobs/{job}").text
    assert "Webhook deliveries" in before and "No delivery yet" in before
    (attempt,) = conn.execute(
        "SELECT attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{null}')",
        (W, job, attempt),
    )
    (delivery, attempt) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s],"
        ' ARRAY[\'{"error": "HTTP 503 from <receiver>"}\'::jsonb])',
        (W, delivery, attempt),
    )

    html = client.get(f"/dashboard/jobs/{job}").text
    assert f'<a href="/dashboard/jobs/{delivery}">{delivery}</a>' in html
    (row,) = rows(html, "job-webhooks")
    assert row[:6] == [str(delivery), "retrying", "1", "of", "10", "HTTP"]
    assert "HTTP 503 from &lt;receiver&gt;" in html  # escaped like every value
    assert f'<code class="wrap">{HOOK}</code>' in html
    plain = enqueue(conn)
    assert "Webhook deliveries" not in client.get(f"/dashboard/jobs/{plain}").text
    # a finished job whose delivery is gone says so
    conn.execute("DELETE FROM skiplock.webhook_deliveries")
    assert "No delivery is linked to this job" in client.get(f"/dashboard/jobs/{job}").text


def traced(conn: psycopg.Connection, traceparent: str = TRACEPARENT) -> int:
    meta = json.dumps({"trace": {"traceparent": traceparent}})
    return enqueue(conn, ", meta => %s::jsonb", meta)


def test_the_trace_is_a_link_with_a_template_and_text_without(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    job = traced(conn)
    template = "https://traces.example.com/trace/{trace_id}?span={span_id}"
    linked = viewer(make_client(trace_url=template), conn)
    html = linked.get(f"/dashboard/jobs/{job}").text
    assert (
        f'<a href="https://traces.example.com/trace/{TRACE_ID}?span={SPAN_ID}"'
        f' rel="noopener noreferrer"><code>{TRACE_ID}</code></a>'
    ) in html
    plain = make_client()
    assert log_in(plain, username="ada", password=PASSWORD).status_code == 303
    html = plain.get(f"/dashboard/jobs/{job}").text
    assert f'<dd id="job-trace"><code>{TRACE_ID}</code></dd>' in html
    assert 'id="job-trace"' not in plain.get(f"/dashboard/jobs/{enqueue(conn)}").text


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "00-xyz-00f067aa0ba902b7-01",
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
    ],
)
def test_no_trace_from_a_bad_traceparent(traceparent: str) -> None:
    assert trace_link({"trace": {"traceparent": traceparent}}, None) is None
    assert trace_link({"trace": "nope"}, None) is None
    assert trace_link({}, "https://x/{trace_id}") is None


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("javascript:alert(1)//{trace_id}", "http or https"),
        ("ftp://traces/{trace_id}", "http or https"),
        ("https:///{trace_id}", "http or https"),
        ("https://traces.example.com/", "must contain {trace_id}"),
        ("https://traces.example.com/{traceid}", "unknown placeholder {traceid}"),
        ("https://traces.example.com/{trace_id.__class__}", "unknown placeholder"),
    ],
)
def test_a_trace_url_must_be_http_with_the_trace_id(
    dsn: str, template: str, why: str, make_client: Callable[..., TestClient]
) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        check_trace_url(template)
    with pytest.raises(ConfigError, match=r"^trace_url "):
        make_client(trace_url=template)
