"""Scan-to-win under load on PostgreSQL: N clients (threads, one connection each) scanning signed codes,
each scan decided by the engine (default policy) and gated, drawn and written to the ledger; then the
challenges resolved by the simulator's challenge model; then the ledger re-read by ``audit``.

    python bench/campaigns.py --json bench/results/campaigns.json [--clients 32 --scans 6000 --db URL]

Traffic: genuine scanners (own phone, residential IP) and a ring (emulators, data-centre IPs, shared
devices); retried requests (same event id again), codes scanned by a second account, forged and altered
codes. ``overspent`` and ``paid_twice`` are violations found afterwards in the ledger (both must be 0).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from woolguard.campaigns import CodeSigner
from woolguard.campaigns import service as S
from woolguard.campaigns.ledger import audit
from woolguard.engine import CampaignInfo, Engine
from woolguard.events import Account, Device, Event, EventKind
from woolguard.sim.challenge import challenge_passed
from woolguard.storage import open_database

PG = "postgresql://postgres@127.0.0.1:5432/test"
T0 = 1_750_000_000_000
TENANT = "bench"


def make_events(n: int, codes: list[str], rng: random.Random) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        gang = rng.random() < 0.3
        ts = T0 + i * 50
        if gang:
            k = rng.randrange(60)
            dev = Device(id=f"emu{k % 6}", model="SM-G9", os="android", emulator=rng.random() < 0.6,
                         rooted=True, multi_open=rng.random() < 0.5)
            ev = Event(event_id=f"s{i}", kind=EventKind.SCAN, ts=ts, campaign_id="bench", truth="device_farm",
                       account=Account(id=f"g{k}", tier=0, created_at=ts - 60_000), device=dev,
                       ip=f"47.{92 + k % 3}.{k}.{i % 250 + 1}", phone=f"170{k:08d}")
        else:
            k = rng.randrange(20_000)
            dev = Device(id=f"d{k}", model="iPhone14,2", os="ios", os_version="17.1")
            ev = Event(event_id=f"s{i}", kind=EventKind.SCAN, ts=ts, campaign_id="bench", truth="genuine",
                       account=Account(id=f"u{k}", tier=2, created_at=ts - 400 * 86_400_000), device=dev,
                       ip=f"114.{k % 200}.{k % 250}.{k % 240 + 1}", phone=f"138{k:08d}")
        r = rng.random()
        if r < 0.03:  # forged
            code = "".join(rng.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(20))
        elif r < 0.06:  # altered
            c = codes[i]
            code = c[:7] + ("Z" if c[7] != "Z" else "Y") + c[8:]
        elif r < 0.10:  # a code someone else scans too
            code = codes[rng.randrange(n)]
        else:
            code = codes[i]
        out.append(Event(**{**{f: getattr(ev, f) for f in ev.__struct_fields__}, "code_id": code}))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--db", default=PG, help="PostgreSQL server URL (a fresh schema is made and dropped)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--scans", type=int, default=6000)
    ap.add_argument("--retry-share", type=float, default=0.1, help="share of scans sent twice")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    import psycopg

    schema = f"wg_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.db, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    db = open_database(f"{args.db}?options=-csearch_path%3D{schema}", pool_size=args.clients + 4, max_overflow=4)
    try:
        rules = {"kind": "scan", "name": "bench", "start_ms": T0, "end_ms": T0 + 30 * 86_400_000,
                 "budget_fen": 120_000, "daily_cap_fen": 100_000,
                 "tiers": [{"id": "big", "amount_fen": 8_888, "count": 3, "probability": 0.002},
                           {"id": "mid", "amount_fen": 500, "count": 60, "probability": 0.05},
                           {"id": "small", "amount_fen": 100, "count": 5_000, "probability": 0.4}],
                 "limits": {"account_day": 3, "device_day": 5, "phone_campaign": 10}}
        signer = CodeSigner.for_tenant(b"bench-secret", TENANT)
        with db.connect() as conn:
            S.create_campaign(conn, TENANT, "bench", rules)
            batch = S.create_batch(conn, TENANT, "bench", args.scans, product="cola", line="L1")
        codes = [c for _, c in signer.batch(batch, args.scans)]
        rng = random.Random(args.seed)
        events = make_events(args.scans, codes, rng)
        retried = {i for i in range(len(events)) if rng.random() < args.retry_share}
        engine = Engine(campaigns={"bench": CampaignInfo("bench", T0)}, tenant=TENANT)
        engine_lock = threading.Lock()
        statuses: Counter[str] = Counter()
        stat_lock = threading.Lock()
        errors: list[BaseException] = []
        next_i = iter(range(len(events)))
        take = threading.Lock()
        barrier = threading.Barrier(args.clients + 1)

        def client() -> None:
            try:
                with db.connect() as conn:
                    barrier.wait()
                    local: Counter[str] = Counter()
                    while True:
                        with take:
                            i = next(next_i, None)
                        if i is None:
                            break
                        ev = events[i]
                        with engine_lock:
                            d = engine.decide(ev)
                        r = S.scan(conn, TENANT, ev, d, signer)
                        local[r.status] += 1
                        if i in retried:
                            again = S.scan(conn, TENANT, ev, d, signer)
                            local["retry_same" if (again.status, again.amount_fen) == (r.status, r.amount_fen)
                                  else "retry_differs"] += 1
                    with stat_lock:
                        statuses.update(local)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        if errors:
            raise errors[0]
        # challenges: each actor passes or fails by the simulator's model, from several clients at once
        with db.connect() as conn:
            pending = S.list_challenges(conn, TENANT, status="pending", limit=10**6)
        by_id = {e.event_id: e for e in events}

        def resolve(part: list[dict]) -> None:
            with db.connect() as conn:
                for ch in part:
                    ev = by_id[ch["event_id"]]
                    if ch["outcome"] == "verify":
                        S.challenge_result(conn, TENANT, ch["id"], challenge_passed(ev, ch["challenge"]),
                                           ts=ch["ts"] + 5_000)
                    else:
                        S.review_verdict(conn, TENANT, ch["id"], challenge_passed(ev, "review"), "bench",
                                         ts=ch["ts"] + 60_000)

        parts = [pending[i::args.clients] for i in range(args.clients)]
        rs = [threading.Thread(target=resolve, args=(p,)) for p in parts]
        for t in rs:
            t.start()
        for t in rs:
            t.join()
        with db.connect() as conn:
            found = audit(conn, TENANT)
            state = S.campaign_state(conn, TENANT, "bench")
            from sqlalchemy import func, select

            from woolguard.storage.schema import ledger
            money = dict(conn.execute(select(ledger.c.kind, func.sum(ledger.c.amount_fen))
                                      .where(ledger.c.tenant_id == TENANT).group_by(ledger.c.kind)).all())
        result = {
            "scans_per_s": round(args.scans / seconds, 1),
            "clients": args.clients,
            "scans": args.scans,
            "seconds": round(seconds, 2),
            "overspent": found["overspent"],
            "paid_twice": found["paid_twice"],
            "violations": found["details"],
            "statuses": dict(statuses),
            "challenges_resolved": len(pending),
            "budget_fen": rules["budget_fen"],
            "committed_fen": state["spent_fen"],
            "ledger_fen": {k: int(v) for k, v in money.items()},
            "tiers": state["tiers"],
            "backend": "postgresql",
            "note": "decisions by the default policy (one engine shared under a lock); each scan one transaction",
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if found["overspent"] == 0 and found["paid_twice"] == 0 else 1
    finally:
        db.close()
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
