"""bench/dashboard_screenshots.py shoots every page of the dashboard: its PAGES name each
route a browser opens (GET, HTML), and docs/dashboard.md shows each light screenshot and
links the dark one. No browser and no database: the routes come from the app itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from starlette.routing import Mount, Route

import skiplock
from skiplock.api.state import ApiState
from skiplock.dashboard.app import dashboard_app
from skiplock.dashboard.pages import PREFIX

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "bench" / "dashboard_screenshots.py"
# GET routes that answer something other than a page: files and the live event stream
NOT_PAGES = {"export_csv", "export_jsonl", "events"}


def screenshots() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_routes() -> dict[str, Route]:
    """The dashboard's GET routes under /dashboard, by name."""
    # the App opens no connection until it is used, and nothing here uses it
    state = ApiState(
        app=skiplock.App("postgresql://127.0.0.1:1/unused"), max_body_bytes=1024, db_timeout=1.0
    )
    app = dashboard_app(state, None)
    (mount,) = [r for r in app.routes if isinstance(r, Mount) and r.path == PREFIX]
    return {
        route.name: route
        for route in mount.routes
        if isinstance(route, Route) and route.methods and "GET" in route.methods
    }


def test_every_page_route_has_a_screenshot() -> None:
    routes = page_routes()
    shot = {route for _name, route, _path in screenshots().PAGES}
    assert shot == set(routes) - NOT_PAGES
    assert NOT_PAGES <= set(routes)  # an excluded route that is gone leaves the list


def test_each_page_path_opens_its_route() -> None:
    routes = page_routes()
    ids = {"running": 1, "workflow": 1}
    for _name, route, path in screenshots().PAGES:
        assert routes[route].path_regex.match(path.format(**ids).split("?")[0]), (route, path)


def test_the_docs_show_each_light_screenshot_and_link_the_dark_one() -> None:
    module = screenshots()
    names = [name for name, _route, _path in module.PAGES]
    assert len(set(names)) == len(names)
    docs = (ROOT / "docs" / "dashboard.md").read_text()
    for name in names:
        for scheme in module.SCHEMES:
            assert (ROOT / "docs" / "dashboard" / f"{name}-{scheme}.png").is_file(), name
        assert f"](dashboard/{name}-light.png)" in docs, name
        assert f"(dashboard/{name}-dark.png)" in docs, name
