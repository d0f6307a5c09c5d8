"""Benchmark of the HTTP decision service: the full pipeline against a bare FastAPI endpoint, same workers.

    python bench/service.py --json bench/results/service.json [--workers 2] [--seconds 10] [--conc 32]

Starts, on loopback:
- a private ``redis-server`` on a free port, and a fresh schema in the PostgreSQL at
  ``$WOOLGUARD_BENCH_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``), dropped afterwards;
- ``uvicorn`` with N workers serving either a bare FastAPI app (``POST /v1/events`` returns a constant) or
  woolguard (``WOOLGUARD_DATABASE_URL`` = that PostgreSQL, ``WOOLGUARD_REDIS_URL`` = that Redis);
- a load generator in a separate process (``wrk`` is not installed here): asyncio over raw keep-alive
  HTTP/1.1 connections, every request a new event (new event id, moving clock, a few thousand devices,
  accounts and IPs), closed loop for throughput, then an open loop at a fixed rate whose latency is
  measured from each request's scheduled send time (no coordinated omission).

Writes ``{"bare": {rps, p50_ms, p99_ms}, "full": {...}, "ratio", "fixed_rate": {"rps", "p50_ms", "p99_ms"}}``
plus the settings and a check that every full-pipeline decision reached the decision log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

# -- the bare app ---------------------------------------------------------------------------------------


def bare_app() -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/v1/events")
    async def events() -> dict[str, Any]:
        return {"decision_id": "d_0", "event_id": "e", "level": 0, "outcome": "pass", "score": 0, "reasons": []}

    return app


# -- the load generator (runs in its own process) -------------------------------------------------------

_TEMPLATE = ('{"event_id":"%s-%d","kind":"claim","ts":%d,"account":{"id":"a%d"},"campaign_id":"spring",'
             '"device":{"id":"d%d","model":"Mi 11","os":"android","os_version":"13"},"ip":"36.%d.%d.%d",'
             '"phone_hash":"h%d","value":5.0}')


def _request(port: int, key: str, run: str, i: int) -> bytes:
    body = (_TEMPLATE % (run, i, 1_767_225_600_000 + i * 7, i % 5000, i % 3000, i % 200, i % 250, i % 97 + 1,
                         i % 4000)).encode()
    head = (f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _load(port: int, key: str, conc: int, seconds: float, rate: float | None, warmup: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    lat: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    t_measure = t_start + warmup
    t_end = t_measure + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        k = 0
        while True:
            if rate is not None:  # open loop: connection w sends at its share of the rate
                scheduled = t_start + (k * conc + w) / rate
                k += 1
                now = time.perf_counter()
                if scheduled > now:
                    await asyncio.sleep(scheduled - now)
                start = scheduled
            else:
                start = time.perf_counter()
            if start >= t_end:
                break
            status = await _one(reader, writer, _request(port, key, run, next(counter)))
            done = time.perf_counter()
            if start >= t_measure:
                if status != 200:
                    errors += 1
                lat.append(done - start)
        writer.close()

    await asyncio.gather(*(worker(w) for w in range(conc)))
    lat.sort()
    n = len(lat)

    def pct(p: float) -> float:
        return round(lat[min(n - 1, int(p * n))] * 1000, 3) if n else float("nan")

    return {"requests": n, "errors": errors, "rps": round(n / seconds, 1), "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "max_ms": round(lat[-1] * 1000, 3) if n else None, "conc": conc}


def loadgen_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--key", default="none")
    p.add_argument("--conc", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--warmup", type=float, default=2)
    p.add_argument("--rate", type=float, default=None)
    a = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_load(a.port, a.key, a.conc, a.seconds, a.rate, a.warmup))))


def run_load(port: int, key: str, conc: int, seconds: float, rate: float | None = None) -> dict[str, Any]:
    cmd = [PY, __file__, "--loadgen", "--port", str(port), "--key", key, "--conc", str(conc),
           "--seconds", str(seconds)]
    if rate is not None:
        cmd += ["--rate", str(rate)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- servers ------------------------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def start_uvicorn(target: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    cmd = [PY, "-m", "uvicorn", target, "--factory", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning", "--app-dir", str(ROOT / "bench")]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
    wait_port(port)
    time.sleep(1.0 + 0.5 * workers)  # every worker up
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--conc", type=int, default=32)
    p.add_argument("--rate", type=float, default=1000)
    p.add_argument("--pg", default=os.environ.get("WOOLGUARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    a = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    import psycopg

    from woolguard.api.testing import PrivateRedis, tenant_with_key
    from woolguard.storage import open_database

    schema = f"wg_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(a.pg, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    pg_url = f"{a.pg}?options=-csearch_path%3D{schema}"
    redis = PrivateRedis().start()
    tmp = Path(tempfile.mkdtemp(prefix="wg-bench-"))
    result: dict[str, Any] = {"workers": a.workers, "seconds": a.seconds, "conc": a.conc,
                              "load_generator": "bench/service.py asyncio raw HTTP/1.1 keep-alive, separate process",
                              "cpus": os.cpu_count()}
    try:
        db = open_database(pg_url)
        key = tenant_with_key(db, "bench")["Authorization"].split()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WOOLGUARD_DATABASE_URL": pg_url,
               "WOOLGUARD_REDIS_URL": redis.url, "WOOLGUARD_SPILL_DIR": str(tmp),
               "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
        (tmp / "metrics").mkdir()
        port = free_port()
        proc = start_uvicorn("service:bare_app", port, a.workers, env)
        try:
            run_load(port, key, a.conc, 2)  # warm-up
            result["bare"] = run_load(port, key, a.conc, a.seconds)
        finally:
            stop(proc)
        port = free_port()
        proc = start_uvicorn("woolguard.api.app:app_from_env", port, a.workers, env)
        try:
            run_load(port, key, a.conc, 2)
            result["full"] = run_load(port, key, a.conc, a.seconds)
            fixed = run_load(port, key, max(8, a.conc // 2), a.seconds, rate=a.rate)
            result["fixed_rate"] = {**fixed, "rps": a.rate, "achieved_rps": fixed["rps"]}
        finally:
            stop(proc)  # workers flush their decision logs on shutdown
        from sqlalchemy import func, select

        from woolguard.storage.schema import decisions

        with db.connect() as conn:
            logged = conn.execute(select(func.count()).select_from(decisions)).scalar()
        db.close()
        sent = sum(result[k]["requests"] for k in ("full", "fixed_rate"))
        result["decision_log"] = {"rows": logged, "measured_requests": sent,
                                  "note": "rows include the warm-up and the untimed tail of each run"}
        result["ratio"] = round(result["full"]["rps"] / result["bare"]["rps"], 3)
        result["goals"] = {"ratio>=0.4": result["ratio"] >= 0.4,
                           "fixed_rate_p99<=20ms": result["fixed_rate"]["p99_ms"] <= 20}
    finally:
        redis.close()
        with psycopg.connect(a.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        shutil.rmtree(tmp, ignore_errors=True)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
    else:
        main()
