"""The worker leaves the objects that exist when it starts out of the cyclic collector's
walks while it runs, and hands them back when it stops."""

from __future__ import annotations

import gc

import pytest
from test_worker import run_worker

import skiplock


@pytest.fixture
def app(dsn: str) -> skiplock.App:
    application = skiplock.App(dsn)
    yield application
    application.close()


def test_startup_objects_frozen_while_running_and_unfrozen_after(app):
    assert gc.get_freeze_count() == 0
    seen = []

    async def body(worker):
        seen.append(gc.get_freeze_count())

    run_worker(app, body)
    assert seen[0] > 1_000  # the modules, the app, the pools
    assert gc.get_freeze_count() == 0


def test_not_frozen_when_turned_off(app):
    seen = []

    async def body(worker):
        seen.append(gc.get_freeze_count())

    run_worker(app, body, freeze_startup_objects=False)
    assert seen == [0]


def test_someone_elses_freeze_is_left_alone(app):
    gc.freeze()  # as a forking server does before its fork
    try:
        before = gc.get_freeze_count()

        # (the count drops a little as frozen objects are freed by reference counting)
        async def body(worker):
            assert before * 0.9 < gc.get_freeze_count() <= before

        run_worker(app, body)
        assert before * 0.9 < gc.get_freeze_count() <= before
    finally:
        gc.unfreeze()
