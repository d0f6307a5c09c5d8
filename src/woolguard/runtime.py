"""Process settings for long-running deciders (demo, replay, serve, benchmarks).

The engine's state is millions of small containers (ordered maps, deques) without reference cycles.
CPython's cyclic garbage collector would walk all of them again and again as the state grows (a full
collection every few thousand decisions, costing milliseconds each); ``tune_gc`` moves what exists at
start-up out of its sight and makes collections rare. Memory is still freed by reference counting at once;
only cyclic garbage waits longer.
"""

from __future__ import annotations

import gc

#: Allocations between young collections, and how many young / middle collections trigger the next.
GC_THRESHOLDS = (100_000, 50, 1_000)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def freeze() -> None:
    """Move what exists now (a service's engines, policies and models once loaded) out of the collector's sight,
    without a collection: a worker calls it after it loads a tenant, on the request path."""
    gc.freeze()
