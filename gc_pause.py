"""gc_paused(): hold off Python's cyclic garbage collector while a block runs.

Compiling a graph allocates many small objects that form reference cycles (each IR Op and its
result Values point at each other; fuse, hoist_views and the pass manager's snapshots build and
drop thousands). Every 700 net allocations the collector runs, scanning the young objects, and
every tenth run the middle generation too; each scan also costs the bookkeeping of everything it
promotes. On GPT-2 those collections were ~15% of ember's compile time, charged to whichever pass
happened to allocate. Reference counting still frees everything acyclic during the block; the
block's cycles are freed by the first collection after it, one scan of what the block allocated.

(gc.freeze() instead, leaving collections on but the old heap out of them, measured the same;
it also thaws whatever a caller froze, so it is not used.)
"""
from __future__ import annotations

import contextlib
import gc
from typing import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic GC for the block; re-entrant (an inner block leaves it as it found it)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
