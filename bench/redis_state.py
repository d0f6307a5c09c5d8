"""Feature-state throughput: RedisState.observe (one FCALL per event) against MemoryState, on simulated traffic.

    python bench/redis_state.py --json bench/results/redis_state.json [--scale 0.1] [--url redis://127.0.0.1:6379/15]

The engine runs the simulated campaign once over a recording MemoryState to capture each event's exact
``observe(ts, kind, entities)`` call (not timed). Then, per round, a fresh tenant replays those calls:

- ``memory``: MemoryState, one thread;
- ``redis_1``: one RedisState, one synchronous client, in time order (its values are checked against memory);
- ``redis_threads8``: one RedisState shared by 8 threads (its connection pool), events dealt round-robin;
- ``redis_procs8``: 8 processes, one RedisState each, events dealt round-robin (timed from a common start).

Rounds run every mode in turn; the median events/s is reported with all rounds. Also records Redis's own
time per FCALL (EVALSHA on a Redis without functions; INFO commandstats, during ``redis_1``: the ceiling of one
Redis core is 1e6 / that), and the keys and Redis memory one replay leaves (before expiry). The tenants' keys are
deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from woolguard.features import MemoryState, RedisState  # noqa: E402

WORKERS = 8


class Recorder:
    """A FeatureState that records every observe call it forwards."""

    def __init__(self, inner: MemoryState):
        self.inner = inner
        self.windows = inner.windows
        self.calls: list[tuple] = []

    def observe(self, ts_ms, kind, entities):
        self.calls.append((ts_ms, kind, dict(entities)))
        return self.inner.observe(ts_ms, kind, entities)

    def peek(self, ts_ms, entities):
        return self.inner.peek(ts_ms, entities)


def capture(seed: int, scale: float) -> list[tuple]:
    from woolguard.engine import Engine
    from woolguard.sim import SimConfig, simulate

    cfg = SimConfig(seed=seed, scale=scale)
    rec = Recorder(MemoryState())
    engine = Engine(state=rec)
    for ev in simulate(cfg):
        engine.decide(ev)
    return rec.calls


def run_memory(calls: list[tuple]) -> tuple[float, list[list[int]]]:
    st = MemoryState()
    observe = st.observe
    t0 = time.perf_counter()
    out = [observe(ts, kind, ents) for ts, kind, ents in calls]
    return time.perf_counter() - t0, out


def run_redis_1(url: str, calls: list[tuple]) -> tuple[float, list[list[int]], RedisState]:
    st = RedisState(url, tenant="bench" + uuid.uuid4().hex[:10], timeout_s=5.0)
    st.observe(*calls[0][:3])  # load the script and open the connection (not timed), then start over
    st.clear()
    observe = st.observe
    t0 = time.perf_counter()
    out = [observe(ts, kind, ents) for ts, kind, ents in calls]
    return time.perf_counter() - t0, out, st


def run_redis_threads(url: str, calls: list[tuple]) -> float:
    st = RedisState(url, tenant="bench" + uuid.uuid4().hex[:10], timeout_s=5.0, max_connections=WORKERS)
    st.observe(*calls[0][:3])
    st.clear()
    barrier = threading.Barrier(WORKERS + 1)

    def work(share: list[tuple]) -> None:
        observe = st.observe
        barrier.wait()
        for ts, kind, ents in share:
            observe(ts, kind, ents)

    threads = [threading.Thread(target=work, args=(calls[i::WORKERS],)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    st.clear()
    st.close()
    return elapsed


def _proc(url: str, tenant: str, share: list[tuple], ready, go) -> None:
    st = RedisState(url, tenant=tenant, timeout_s=5.0)
    st.peek(share[0][0], share[0][2])  # connect before the start
    ready.release()
    go.wait()
    observe = st.observe
    for ts, kind, ents in share:
        observe(ts, kind, ents)


def run_redis_procs(url: str, calls: list[tuple]) -> float:
    ctx = multiprocessing.get_context("fork")
    tenant = "bench" + uuid.uuid4().hex[:10]
    RedisState(url, tenant=tenant).observe(*calls[0][:3])  # load the script
    ready, go = ctx.Semaphore(0), ctx.Event()
    procs = [ctx.Process(target=_proc, args=(url, tenant, calls[i::WORKERS], ready, go)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.acquire()
    t0 = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    if any(p.exitcode for p in procs):
        raise RuntimeError("a worker process failed")
    RedisState(url, tenant=tenant).clear()
    return elapsed


def _call_stats(url: str) -> tuple[int, int]:
    """(calls, µs) of FCALL and EVALSHA so far, server-wide (read before and after a run; other clients' calls add
    in)."""
    info = RedisState(url, tenant="bench").client.info("commandstats")
    stats = [info.get(name, {}) for name in ("cmdstat_fcall", "cmdstat_evalsha")]
    return sum(int(s.get("calls", 0)) for s in stats), sum(int(s.get("usec", 0)) for s in stats)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--scale", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    calls = capture(args.seed, args.scale)
    n = len(calls)
    print(f"{n} events, {len(MemoryState().windows)} windows", file=sys.stderr)
    rounds: dict[str, list[float]] = {"memory": [], "redis_1": [], "redis_threads8": [], "redis_procs8": [],
                                      "server_us_per_event": []}
    identical = True
    footprint = {}
    for r in range(args.rounds):
        secs, expected = run_memory(calls)
        rounds["memory"].append(n / secs)
        before = _call_stats(args.url)
        secs, got, st = run_redis_1(args.url, calls)
        after = _call_stats(args.url)
        rounds["server_us_per_event"].append((after[1] - before[1]) / max(1, after[0] - before[0]))
        rounds["redis_1"].append(n / secs)
        identical = identical and got == expected
        if r == 0:
            info = st.client.info("memory")
            footprint = {"keys": sum(1 for _ in st.stored_keys()), "redis_used_memory_bytes": info["used_memory"]}
            st.clear()
            footprint["bytes_per_key"] = round(
                (footprint["redis_used_memory_bytes"] - st.client.info("memory")["used_memory"]) / footprint["keys"])
        st.clear()
        st.close()
        rounds["redis_threads8"].append(n / run_redis_threads(args.url, calls))
        rounds["redis_procs8"].append(n / run_redis_procs(args.url, calls))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rounds.items()), file=sys.stderr)

    server_us = rounds.pop("server_us_per_event")
    med = {k: round(statistics.median(v)) for k, v in rounds.items()}
    result = {
        "events": n,
        "windows": len(MemoryState().windows),
        "scale": args.scale,
        "seed": args.seed,
        "events_per_s": med,
        "us_per_event": {k: round(1e6 / v, 1) for k, v in med.items()},
        "rounds": {k: [round(x) for x in v] for k, v in rounds.items()},
        "redis_server_us_per_event": round(statistics.median(server_us), 1),
        "redis_server_us_per_event_rounds": [round(x, 1) for x in server_us],
        "redis_1_identical_to_memory": identical,
        "footprint_after_one_replay": footprint,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "redis_version": RedisState(args.url, tenant="bench").client.info("server")["redis_version"],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["events_per_s"]))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
