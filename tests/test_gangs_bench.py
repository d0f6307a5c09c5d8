"""bench/gangs.py skips a missing data set cleanly; the graph's evidence arrays line up with its CSR."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from woolguard.gangs import build_graph

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gangs.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gangs", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_missing_data_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("WOOLGUARD_DATA_DIR", str(tmp_path))
    bench = load_bench()
    assert "skipped" in bench.bench_tolokers()
    assert "skipped" in bench.bench_yelpchi()


def test_small_scale_worker_runs():
    bench = load_bench()
    out = bench.scale_worker(5_000, 25_000, 1_000_000)
    assert out["accounts"] > 4_000 and out["seconds"] > 0 and out["peak_rss_mb"] > 0


def test_edge_arrays_follow_incidence_order():
    rng = np.random.default_rng(0)
    acc = rng.integers(0, 50, 400)
    typ = rng.choice(np.array(["device_id", "ip"]), 400)
    val = rng.integers(0, 30, 400)
    g = build_graph(acc, typ, val, rng.integers(0, 10_000, 400))
    coo = g.incidence.tocoo()
    np.testing.assert_array_equal(coo.row, g.edge_account)
    np.testing.assert_array_equal(coo.col, g.edge_attr)
