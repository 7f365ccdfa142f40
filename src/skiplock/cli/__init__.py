"""The `skiplock` command: every admin action, each a call into the same App and store.

`main` is the root group (skiplock.cli.root); each module below adds one command group.
"""

from skiplock.cli import (  # noqa: F401  (imported to register their commands)
    audit,
    bench,
    dead_letters,
    dev,
    enqueue,
    history,
    jobs,
    migrate,
    queues,
    schedules,
    serve,
    tasks,
    tokens,
    users,
    worker,
    workflows,
)
from skiplock.cli.root import main

__all__ = ["main"]
