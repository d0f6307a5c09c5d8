"""The learned model's figures: simulated campaigns, S-FFSD (two splits), a month-size backtest, inference cost.

    python bench/model.py --json bench/results/model.json [--scale 1.0] [--skip-sffsd] [--backtest-rows 10000000]

sim       SimConfig(seed=7, scale): train on days 1-2 (payout events), test on day 3. ``auroc``: the model alone on
          day 3; ``caught_pct`` / ``genuine_rejected_pct``: the engine with the shipped policy plus the model's rules
          (thresholds chosen on the validation slice of day 2) on day 3, with the simulator's challenge model. Both
          replays re-run gang detection as the service schedules it (hourly over the last 3 days of what was seen
          so far), so gang features and gang rules only know gangs found from earlier events.
sffsd     ``woolguard import`` of ../shared/data/s-ffsd/S-FFSD.csv (or $WOOLGUARD_DATA_DIR/s-ffsd/S-FFSD.csv) with a
          column mapping only, then training on the import: the published random stratified split (40% test,
          seed 42) and a 70/30 time split, with label feedback (``model/feedback.py``, label delay: the import's
          default, its third span). ``time_*``: strict feedback (the test period reads only labels of events
          before it); ``time_delayed_*``: also its own events' labels once older than the delay, as a running
          system would; ``*_nofeedback_*``: none. Skipped cleanly when the file is absent.
backtest  the day-3 ... feature rows of the sim replay (every payout event, with the model's stored score), tiled
          to >= ``--backtest-rows`` rows (copies shifted by whole days, so a month and more), backtested: the
          shipped policy (active) against the shipped policy + model rules (candidate). NB: tiling repeats the same
          value combinations, which the per-rule memoisation profits from.
inference ``LightGBMScorer.score`` on feature mappings of the test rows (vector assembly included), 1 thread;
          ``max_abs_diff``: |scorer's LightGBM probability - booster.predict| over every test row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from woolguard.engine import Engine  # noqa: E402
from woolguard.model.importer import Mapping, import_log, imported_features, load_import  # noqa: E402
from woolguard.model.pipeline import policy_with_model, train_import, train_sim  # noqa: E402
from woolguard.model.scorer import LightGBMScorer  # noqa: E402
from woolguard.rules.backtest import backtest, frame_from_table  # noqa: E402
from woolguard.sim import SimConfig  # noqa: E402

#: The only thing specific to S-FFSD: which column is what.
SFFSD_MAPPING = Mapping(time="Time", time_format="order", account="Source", amount="Amount", label="Labels",
                        positive=["1"], negative=["0"], entities=["Target", "Location", "Type"],
                        categories=["Target", "Location", "Type"])


def sffsd_path() -> Path:
    base = os.environ.get("WOOLGUARD_DATA_DIR")
    return (Path(base) if base else ROOT / ".." / "shared" / "data") / "s-ffsd" / "S-FFSD.csv"


def bench_sim(scale: float, threads: int, seed: int = 7) -> tuple[dict, dict]:
    t0 = time.perf_counter()
    out = train_sim(SimConfig(seed=seed, scale=scale), threads=threads, keep_table=True)
    r = out["result"]
    both = out["rules_and_model_test"]
    fig = {"seed": seed, "scale": scale, "rows": out["rows"], "auroc": r.metrics["test"]["auroc"],
           "auprc": r.metrics["test"]["auprc"], "valid_auroc": r.metrics["valid"]["auroc"],
           "caught_pct": both["caught_pct"], "genuine_rejected_pct": both["genuine_rejected_pct"],
           "genuine_challenged_pct": both["genuine_challenged_pct"], "by_archetype": both["by_archetype"],
           "rules_only": out["rules_only_test"], "rounds": r.rounds, "levels": r.levels,
           "score_psi": r.drift["score_psi"], "seconds": round(time.perf_counter() - t0, 1)}
    return fig, out


def bench_sffsd(threads: int) -> dict:
    path = sffsd_path()
    if not path.is_file():
        return {"skipped": f"{path} not found"}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = import_log(path, SFFSD_MAPPING, tmp)
        imp_s = time.perf_counter() - t0
        df, mapping, _ = load_import(tmp)
        t0 = time.perf_counter()
        feats = imported_features(df, mapping)
        feat_s = time.perf_counter() - t0
        res = {"rows": summary["imported"], "labelled": summary["labelled"], "positives": summary["positives"],
               "bad_rows": summary["bad_rows"], "features": len(feats.spec.names), "import_seconds": round(imp_s, 2),
               "feature_seconds": round(feat_s, 1)}
        runs = (("random", "random", "strict"), ("time", "time", "strict"), ("time", "time_delayed", "delayed"),
                ("random", "random_nofeedback", "off"), ("time", "time_nofeedback", "off"))
        for split, key, fb in runs:
            o = train_import(tmp, split=split, threads=threads, features=feats, feedback=fb)
            r = o["result"]
            res[f"{key}_auroc"] = r.metrics["test"]["auroc"]
            res[f"{key}_auprc"] = r.metrics["test"]["auprc"]
            res[f"{key}_detail"] = {"test": r.metrics["test"], "valid": r.metrics["valid"], "rounds": r.rounds,
                                    "split": r.split, "score_psi": r.drift["score_psi"],
                                    "top_features": [d["feature"] for d in r.importance[:8]]}
    return res


def bench_backtest(out: dict, rows: int) -> dict:
    tab = out["table"]
    r = out["result"]
    names = out["feature_names"]
    scorer = LightGBMScorer(r.model_text, r.spec, r.calibration, r.levels, context=r.context)
    x = r.spec.matrix(tab.columns)
    base = frame_from_table(tab, names).with_columns(
        pl.Series("model_score", np.rint(scorer.probabilities(x) * 100).astype(np.int64)),
        pl.Series("model_actor_score", np.rint(scorer.actor_probabilities(x) * 100).astype(np.int64)))
    copies = -(-rows // base.height)
    day = 86_400_000
    span = int(base["ts"].max() - base["ts"].min()) // day + 1
    df = pl.concat([base.with_columns(pl.col("ts") + i * span * day) for i in range(copies)])
    engine = Engine()
    active = engine.policy
    cand = engine.load_policy_text(policy_with_model(r.levels), "<candidate>")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "features.parquet"
        df.write_parquet(p)
        t0 = time.perf_counter()
        df2 = pl.read_parquet(p)
        read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = backtest(df2, active, cand)
    secs = time.perf_counter() - t0
    days = (int(df2["ts"].max()) - int(df2["ts"].min())) / day
    return {"events": df2.height, "seconds": round(secs, 2), "parquet_read_seconds": round(read_s, 2),
            "days": round(days, 1), "base_rows": base.height, "copies": copies,
            "active": res["active"], "candidate": res["candidate"], "changed_outcomes": res["changed_outcomes"]}


def bench_inference(out: dict) -> dict:
    r = out["result"]
    tab = out["table"]
    scorer = LightGBMScorer(r.model_text, r.spec, r.calibration, r.levels, context=r.context)
    booster = lgb.Booster(model_str=r.model_text)
    test = np.nonzero(tab.ts >= int(r.split["test"]["first_ts"]))[0]
    feats = [{n: tab.columns[n][i] for n in tab.columns} for i in test]
    ref = booster.predict(r.spec.matrix({n: [tab.columns[n][i] for i in test] for n in r.spec.names}))
    diff = max(abs(scorer.raw_probability(f) - ref[k]) for k, f in enumerate(feats))
    sample = feats[:20_000]
    best = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for f in sample:
            scorer.score(f)
        best.append((time.perf_counter_ns() - t0) / len(sample) / 1000)
    row = r.spec.matrix({n: [tab.columns[n][test[0]]] for n in r.spec.names})
    t0 = time.perf_counter_ns()
    for _ in range(200):
        booster.predict(row, num_threads=1)
    predict_us = (time.perf_counter_ns() - t0) / 200 / 1000
    t0 = time.perf_counter_ns()
    for f in sample[:50]:
        list(scorer.score(f)[1])
    contrib_us = (time.perf_counter_ns() - t0) / 50 / 1000
    return {"us_per_event": round(float(np.median(best)), 2), "us_per_event_runs": [round(b, 2) for b in best],
            "max_abs_diff": float(diff), "rows_compared": len(feats), "trees": r.rounds,
            "booster_predict_one_row_us": round(predict_us, 1), "with_contributions_us": round(contrib_us, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backtest-rows", type=int, default=10_000_000)
    ap.add_argument("--skip-sffsd", action="store_true")
    ap.add_argument("--only-sffsd", action="store_true", help="only the S-FFSD figures (a partial result)")
    a = ap.parse_args()
    res: dict = {}
    if a.only_sffsd:
        res["sffsd"] = bench_sffsd(a.threads)
        print("sffsd", json.dumps({k: v for k, v in res["sffsd"].items() if not k.endswith("_detail")}), flush=True)
        if a.json:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(res, indent=2), "utf-8")
        return
    res["sim"], out = bench_sim(a.scale, a.threads, a.seed)
    print("sim", json.dumps(res["sim"]), flush=True)
    res["inference"] = bench_inference(out)
    print("inference", json.dumps(res["inference"]), flush=True)
    res["backtest"] = bench_backtest(out, a.backtest_rows)
    print("backtest", json.dumps({k: res["backtest"][k] for k in ("events", "seconds", "days")}), flush=True)
    del out
    res["sffsd"] = {"skipped": "--skip-sffsd"} if a.skip_sffsd else bench_sffsd(a.threads)
    print("sffsd", json.dumps({k: v for k, v in res["sffsd"].items() if not k.endswith("_detail")}), flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2), "utf-8")


if __name__ == "__main__":
    main()
