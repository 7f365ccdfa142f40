"""The web dashboard: server-rendered pages at /dashboard of the API's app, over the same
store and App calls as the API (see docs/dashboard.md)."""

from skiplock.dashboard.app import DashboardDispatch, dashboard_app

__all__ = ["DashboardDispatch", "dashboard_app"]
