"""Each page that updates itself live announces its summary politely: an element with
aria-live="polite" that is itself a live region (data-live, replaced in place by the
page's script, so its changes are announced), nested in no other region, and holding
no table: a screen reader hears the figures that changed, not a whole table."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import psycopg
from dashboard_checks import dead_letters
from pages_checks import logged_in
from starlette.testclient import TestClient

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    parent: Element | None
    tags_inside: set[str] = field(default_factory=set)


class Regions(HTMLParser):
    """The live regions (data-live) and the aria-live elements of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[Element] = []
        self.live: list[Element] = []
        self.announcing: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs), self.open[-1] if self.open else None)
        for outer in self.open:
            outer.tags_inside.add(tag)
        if "data-live" in element.attrs:
            self.live.append(element)
        if "aria-live" in element.attrs:
            self.announcing.append(element)
        if tag not in VOID:
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            if self.open.pop().tag == tag:
                break


def regions_of(html: str) -> Regions:
    found = Regions()
    found.feed(html)
    return found


def inside_a_region(element: Element) -> bool:
    outer = element.parent
    while outer is not None:
        if "data-live" in outer.attrs:
            return True
        outer = outer.parent
    return False


def test_every_live_page_has_a_polite_summary_and_no_announcing_table(
    dsn: str, client: TestClient, conn: psycopg.Connection
) -> None:
    logged_in(client, conn, "boss", "admin")
    (job,) = dead_letters(dsn, "emails", 1)
    conn.execute("SELECT skiplock.register_worker(gen_random_uuid(), 'h', 1, '{q}', 2, 'v')")
    pages = ["/", "/jobs", f"/jobs/{job}", "/queues", "/workers", "/dead-letters"]
    for path in pages:
        page = client.get(f"/dashboard{path}")
        assert page.status_code == 200, (path, page.text)
        found = regions_of(page.text)
        assert found.live, path
        polite = [e for e in found.announcing if e.attrs["aria-live"] == "polite"]
        assert polite, f"{path}: no polite summary"
        for element in found.announcing:
            what = f"{path}: {element.tag}#{element.attrs.get('id')}"
            assert element.attrs["aria-live"] == "polite", what
            assert "data-live" in element.attrs and "id" in element.attrs, what
            assert not inside_a_region(element), what
            assert "table" not in element.tags_inside and element.tag != "table", what
        # and no region nests in another: the script replaces each one's content whole
        assert not any(inside_a_region(region) for region in found.live), path


def test_the_summaries_say_the_figures(
    dsn: str, client: TestClient, conn: psycopg.Connection
) -> None:
    logged_in(client, conn, "boss", "admin")
    dead_letters(dsn, "emails", 2)
    conn.execute("SELECT skiplock.enqueue('t', queue => 'emails')")
    conn.execute("SELECT skiplock.pause_queue('emails')")

    def summary(path: str, region: str) -> str:
        html = client.get(f"/dashboard{path}").text
        return html.split(f'id="{region}" aria-live="polite">', 1)[1].split("</p>", 1)[0]

    assert summary("/jobs", "job-list-summary") == "3 jobs on this page: 1 queued, 2 failed."
    assert summary("/jobs?status=failed", "job-list-summary") == ("2 jobs on this page: 2 failed.")
    assert summary("/queues", "queues-summary") == (
        "1 queue, 1 paused: 1 queued, 0 running, 0 retrying, 2 failed."
    )
    assert summary("/dead-letters", "dead-letter-summary") == "2 dead letters on this page."
    assert summary("/workers", "workers-summary") == ("0 workers alive, 0 healthy, 0 jobs running.")
