"""Process-wide tuning for omnihub's long-running components (workers, web processes)."""

from __future__ import annotations

import gc

#: Collect the youngest generation after this many net allocations of container objects
#: (CPython's default is 700), the older ones after 20 collections of the one below: a worker
#: holds a few batches' objects in flight, which every young collection walks again
#: (docs/design-notes.md#servicesworkerruntimepy).
GC_THRESHOLDS = (100_000, 20, 20)


def tune_gc() -> None:
    """Collect garbage less often, and never scan what start-up built again.

    Batch handlers allocate many short-lived objects (decoded events, records, rows), so with
    CPython's defaults a collection ran every 700 allocations and full collections kept
    walking every module, model and language table loaded at start (a quarter of a worker's
    CPU: docs/design-notes.md#servicesworkerruntimepy). Start-up objects
    are moved to the permanent generation (``gc.freeze``) and the thresholds are raised; cyclic
    garbage is still collected, only in larger steps.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
