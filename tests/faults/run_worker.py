"""Run one worker process over faults_app with WorkerSettings given as JSON in argv[1]
(the CLI does not expose the rescue, heartbeat and probe intervals the faults need)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys

from faults_app import app

from skiplock.worker import Worker, WorkerSettings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app.dsn = os.environ["SKIPLOCK_DSN"]
    settings = WorkerSettings(**json.loads(sys.argv[1]))
    asyncio.run(Worker(app, settings).run(install_signal_handlers=True))
    # A job thread that ignores cancellation must not keep the process alive.
    from skiplock.cli.worker import exit_if_threads_stuck

    exit_if_threads_stuck()
