"""The schedules page: every recurring schedule with its next and last runs, and the
admin actions the API's /api/v1/schedules routes offer (enable, disable, delete), plus
"run now" (skiplock.run_schedule, as the API's run route).

Schedules are not per queue in the API (a queue-limited token cannot read them), so the
page is closed to a queue-limited login, as the dead letters are.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from skiplock import store
from skiplock.api.schedules import STORED_NAME
from skiplock.dashboard.pages import (
    acting,
    audit_found,
    back_to,
    check_sees_all_queues,
    dashboard_of,
    not_found,
    render,
    viewer,
)

PAGE = "Schedules"


async def schedules_page(request: Request) -> Response:
    """GET /dashboard/schedules: by name."""
    who = await viewer(request)
    check_sees_all_queues(who, PAGE)
    rows = await dashboard_of(request).api.run(store.list_schedules())
    return render(request, "schedules.html", {"schedules": rows}, who=who)


async def named(request: Request) -> str:
    """The schedule the URL names; 404 when there is none."""
    name: str = request.path_params["name"]
    if not STORED_NAME.fullmatch(name):
        raise not_found(f"schedule {name}")
    rows = await dashboard_of(request).api.run(store.list_schedules(name))
    if not rows:
        raise not_found(f"schedule {name}")
    return name


async def set_enabled(request: Request, *, enabled: bool) -> Response:
    """POST /dashboard/schedules/{name}/enable or /disable (admin): as the API's routes,
    store.set_schedule_enabled (enabling computes the next run from now: no catch-up)."""
    who, _ = await acting(request, "admin")
    check_sees_all_queues(who, PAGE)
    name = await named(request)
    found = await dashboard_of(request).api.run(store.set_schedule_enabled(name, enabled))
    await audit_found(request, who, found, 200, f"schedules/{name}", f"schedule {name}")
    return back_to(request, "/schedules", "enabled" if enabled else "disabled")


async def enable_schedule(request: Request) -> Response:
    return await set_enabled(request, enabled=True)


async def disable_schedule(request: Request) -> Response:
    return await set_enabled(request, enabled=False)


async def run_schedule(request: Request) -> Response:
    """POST /dashboard/schedules/{name}/run (admin): one job now (skiplock.run_schedule,
    as POST /api/v1/schedules/{name}/run); the next run stays as it was."""
    who, _ = await acting(request, "admin")
    check_sees_all_queues(who, PAGE)
    name = await named(request)
    api = dashboard_of(request).api
    job_id = await api.run(store.run_schedule(name))
    await audit_found(
        request, who, job_id, 201, f"schedules/{name}", f"schedule {name}", job=job_id
    )
    return back_to(request, f"/jobs/{job_id}", "fired")


async def delete_schedule(request: Request) -> Response:
    """GET /dashboard/schedules/{name}/delete: a confirmation; POST (admin): delete it
    (store.delete_schedule, as DELETE /api/v1/schedules/{name}); its jobs stay."""
    if request.method == "GET":
        who = await viewer(request)
        check_sees_all_queues(who, PAGE)
        name = await named(request)
        return render(request, "schedule_delete.html", {"name": name}, who=who)
    who, _ = await acting(request, "admin")
    check_sees_all_queues(who, PAGE)
    name = await named(request)
    found = await dashboard_of(request).api.run(store.delete_schedule(name))
    await audit_found(request, who, found, 204, f"schedules/{name}", f"schedule {name}")
    return back_to(request, "/schedules", "deleted")


routes = [
    Route("/schedules", schedules_page, name="schedules"),
    Route("/schedules/{name}/enable", enable_schedule, methods=["POST"], name="enable_schedule"),
    Route("/schedules/{name}/disable", disable_schedule, methods=["POST"], name="disable_schedule"),
    Route("/schedules/{name}/run", run_schedule, methods=["POST"], name="run_schedule"),
    Route(
        "/schedules/{name}/delete",
        delete_schedule,
        methods=["GET", "POST"],
        name="delete_schedule",
    ),
]
