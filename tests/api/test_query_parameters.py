"""Query parameters are read by one strict parser: anything that is not exactly a value
of the parameter's type is a 422 naming the parameter, never a 500; and any query
string at all on a list route gets an answer below 500."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from api_checks import assert_problem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app

LISTS = {
    "/api/v1/jobs": ("limit",),
    "/api/v1/dead-letters": ("limit",),
    "/api/v1/workflows": ("limit",),
    "/api/v1/audit": ("limit", "before"),
    "/api/v1/queues/default/stats": ("minutes",),
}
NOT_INTEGERS = [
    "--5",
    "-+5",
    "+5",
    " 5",
    "5 ",
    "5\n",
    "5.0",
    "1e3",
    "0x10",
    "5_000",
    "\u0663",  # ARABIC-INDIC DIGIT THREE
    "\uff15",  # FULLWIDTH DIGIT FIVE
    "9" * 30,
    str(2**63),
    "",
    "-",
    "five",
]


@pytest.fixture
def client(dsn: str, conn: psycopg.Connection) -> Iterator[TestClient]:
    conn.execute("SELECT skiplock.create_queue('default')")  # for its stats route
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


@pytest.mark.parametrize("value", NOT_INTEGERS)
def test_a_value_that_is_not_an_integer_is_422_naming_it(client: TestClient, value: str) -> None:
    for path, names in LISTS.items():
        for name in names:
            response = client.get(f"{path}?{name}={quote(value, safe='')}")
            assert_problem(response, 422, "invalid parameter", name)


def test_a_repeated_parameter_is_422(client: TestClient) -> None:
    for path, names in LISTS.items():
        for name in names:
            response = client.get(f"{path}?{name}=5&{name}=5")
            assert_problem(response, 422, "invalid parameter", name)


def test_integers_in_range_still_work(client: TestClient) -> None:
    for path in ("/api/v1/jobs", "/api/v1/dead-letters", "/api/v1/workflows", "/api/v1/audit"):
        for limit in ("1", "-5", "0", "500", "100000", "007", str(2**63 - 1)):
            assert client.get(f"{path}?limit={limit}").status_code == 200, (path, limit)
    assert client.get("/api/v1/audit?before=9223372036854775807").status_code == 200
    assert client.get("/api/v1/queues/default/stats?minutes=1440").status_code == 200
    assert_problem(
        client.get("/api/v1/queues/default/stats?minutes=1441"),
        422,
        "invalid parameter",
        "minutes",
    )


def test_wait_is_a_plain_decimal_number(client: TestClient) -> None:
    for wait in ("1e1", "+1", " 1", "nan", "inf", "\u0661", "0x1", "1_0", "", "-1"):
        response = client.get(f"/api/v1/jobs/1/result?wait={quote(wait, safe='')}")
        assert_problem(response, 422, "invalid parameter", "wait")


def test_the_parser_reads_only_plain_ascii_values() -> None:
    from skiplock.api.query import parse_integer, parse_number, parse_timestamp

    assert parse_integer("-12") == -12 and parse_integer("007") == 7
    assert parse_integer(str(2**63 - 1)) == 2**63 - 1 and parse_integer(str(-(2**63))) == -(2**63)
    for text in NOT_INTEGERS:
        assert parse_integer(text) is None, text
    assert parse_number("0.25") == 0.25 and parse_number("3") == 3.0
    for text in ("1e3", "+1", ".5", "5.", " 5", "nan", "inf", "\u0665", "1" * 40, ""):
        assert parse_number(text) is None, text
    assert parse_timestamp("2030-01-01T09:00:00Z") is not None
    assert parse_timestamp("2030-01-01T09:00:00 02:00") is not None  # "+" decoded as space
    for text in (
        "",
        " 2030-01-01T09:00:00Z",
        "2030-01-01T09:00:00",
        "\u0662\u0660\u0663\u0660-01-01T09:00:00Z",
        "2030-01-01",
    ):
        assert parse_timestamp(text) is None, text


# Names the routes know, names they do not, and the values that broke parsers before.
NAMES = st.sampled_from(
    [
        "limit",
        "cursor",
        "before",
        "minutes",
        "status",
        "queue",
        "task",
        "tag",
        "sort",
        "order",
        "created_after",
        "created_before",
        "finished_after",
        "finished_before",
    ]
) | st.text(max_size=8)
VALUES = (
    st.sampled_from(
        [
            *NOT_INTEGERS,
            *("5", "-5", "e30", "id", "asc", "queued,failed", "queued,"),
            *("2030-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"),
        ]
    )
    | st.text(max_size=30)
    | st.integers().map(str)
    | st.floats().map(str)
)
QUERIES = st.lists(st.tuples(NAMES, VALUES), max_size=4)
RAW = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF), max_size=40)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(sorted(LISTS)), pairs=QUERIES, raw=RAW)
def test_no_query_string_gets_a_5xx(
    client: TestClient, path: str, pairs: list[tuple[str, str]], raw: str
) -> None:
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    for query in (encoded, quote(raw, safe="=&%+")):
        response = client.get(f"{path}?{query}")
        assert response.status_code < 500, (query, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert "field" in response.json(), response.text
