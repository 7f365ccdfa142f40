"""A running worker and Python's cyclic garbage collector.

A full collection walks every tracked object in the process: the imported modules, the
app, the pools, tens of thousands of them, none of which will ever be garbage. Jobs
allocate fast (a task, a coroutine, a context, a row per job), so full collections come
often; measured on a drain of no-op jobs they took about a sixth of the worker's CPU.
Frozen once the worker is up (gc.freeze), those objects are left out of every
collection; they are still freed by reference counting. Unfrozen when the worker stops,
unless something else had frozen objects first (a forking server): then it is not ours
to undo.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> bool:
    """Collect, then freeze what survives; True when this call froze them."""
    if gc.get_freeze_count():
        return False
    gc.collect()
    gc.freeze()
    return True


def unfreeze(frozen: bool) -> None:
    if frozen:
        gc.unfreeze()
