"""The event stream: every actor of the campaign merged into one time-ordered stream.

Arrival sources (genuine arrivals, one per ring) yield ``(ts, actor)`` in time order; an actor is a
generator of events in time order, never before its arrival. The scheduler keeps a heap of the active
actors' next events and admits an arrival only when the stream reaches its time, so memory holds the
actors active now, never the events already produced or still to come.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from operator import itemgetter

from woolguard.events import Event
from woolguard.sim.config import ARCHETYPES, Ctx, SimConfig, scaled
from woolguard.sim.gangs import RING_TYPES, Ring
from woolguard.sim.genuine import Arrivals


def rings(ctx: Ctx) -> list[Ring]:
    """The campaign's wool-party rings: at each scale the same ring sizes, more rings."""
    cfg = ctx.cfg
    out: list[Ring] = []
    for arch in ARCHETYPES:
        accounts = getattr(cfg, f"{arch}_accounts")
        n_rings = getattr(cfg, f"{arch}_rings")
        total = scaled(accounts, cfg.scale)
        if total <= 0 or n_rings <= 0:
            continue
        count = max(1, min(total, scaled(n_rings, cfg.scale)))
        # Unequal ring sizes: a few big operators and several small ones.
        weights = [0.4 + ((i * 7919 + cfg.seed * 31) % 97) / 60 for i in range(count)]
        wsum = sum(weights)
        sizes = [max(1, round(total * w / wsum)) for w in weights]
        for i, size in enumerate(sizes):
            out.append(RING_TYPES[arch](ctx, i, size))
    return out


def simulate(cfg: SimConfig | None = None) -> Iterator[Event]:
    """The campaign's events in time order (non-decreasing ``ts``, unique ``event_id``), lazily."""
    cfg = cfg or SimConfig()
    ctx = Ctx(cfg)
    sources = [iter(Arrivals(ctx))] + [r.arrivals() for r in rings(ctx)]
    arrivals = heapq.merge(*sources, key=itemgetter(0))
    end = ctx.end
    prefix = f"s{cfg.seed}-"
    heap: list[tuple[int, int, Event, Iterator[Event]]] = []
    push, replace, pop = heapq.heappush, heapq.heapreplace, heapq.heappop
    seq = 0
    n = 0
    nxt = next(arrivals, None)
    while True:
        while nxt is not None and (not heap or nxt[0] <= heap[0][0]):
            gen = nxt[1]
            ev = next(gen, None)
            if ev is not None:
                push(heap, (ev.ts, seq, ev, gen))
                seq += 1
            nxt = next(arrivals, None)
        if not heap:
            return
        ts, _, ev, gen = heap[0]
        if ts >= end:  # the campaign is over: nothing later than this can be yielded
            return
        n += 1
        ev.event_id = f"{prefix}{n}"
        yield ev
        nxt_ev = next(gen, None)
        if nxt_ev is None:
            pop(heap)
        else:
            replace(heap, (nxt_ev.ts, seq, nxt_ev, gen))
            seq += 1
