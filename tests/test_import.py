"""Importing event logs: mappings, time formats, bad rows by line number, features, training on the import."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from woolguard.cli import app
from woolguard.model.importer import (
    ORDER_EPOCH_MS,
    ImportError_,
    Mapping,
    SumWindow,
    SumWindows,
    import_log,
    imported_features,
    load_import,
)
from woolguard.model.pipeline import train_import


def _log(path, n=1500, bad=True, seed=0):
    rng = np.random.default_rng(seed)
    lines = ["t,user,shop,amt,lab,city"]
    for i in range(n):
        fraud = rng.random() < 0.2
        user = f"u{rng.integers(0, 40) if fraud else rng.integers(40, 600)}"
        shop = f"s{rng.integers(0, 3) if fraud else rng.integers(0, 30)}"
        amt = f"{rng.gamma(2, 50 if fraud else 20):.2f}"
        lab = "1" if fraud else ("0" if rng.random() < 0.8 else "2")
        lines.append(f"{i},{user},{shop},{amt},{lab},c{rng.integers(0, 5)}")
    if bad:
        lines[10] = "x,u1,s1,3.0,0,c1"  # line 11: time not a number
        lines[20] = "19,,s1,3.0,0,c1"  # line 21: no account
        lines[30] = "29,u1,s1,-4,0,c1"  # line 31: negative amount
    path.write_text("\n".join(lines) + "\n")
    return path


MAP = Mapping(time="t", time_format="order", account="user", amount="amt", label="lab", positive=["1"],
              negative=["0"], entities=["shop"], categories=["city"], spans=[10, 100, 1000])


def test_bad_rows_reported_with_line_numbers_and_skipped(tmp_path):
    s = import_log(_log(tmp_path / "log.csv"), MAP, tmp_path / "out")
    assert s["rows"] == 1500 and s["imported"] == 1497 and s["bad_rows"] == 3
    assert [(b["line"], b["column"]) for b in sorted(s["bad_shown"], key=lambda b: b["line"])] == [
        (11, "t"), (21, "user"), (31, "amt")]
    assert (tmp_path / "out" / "bad_rows.csv").read_text().count("\n") == 4
    df, _mapping, _meta = load_import(tmp_path / "out")
    assert df["ts"].is_sorted() and df["ts"][0] == ORDER_EPOCH_MS
    assert set(df["label"].unique().to_list()) == {-1, 0, 1}  # "2" is unlabelled


def test_refuse_writes_nothing(tmp_path):
    with pytest.raises(ImportError_) as exc:
        import_log(_log(tmp_path / "log.csv"), MAP, tmp_path / "out", on_error="refuse")
    assert "line 11" in str(exc.value) and len(exc.value.bad) == 3
    assert not (tmp_path / "out").exists()


def test_unknown_column_is_named(tmp_path):
    with pytest.raises(ImportError_, match="nope"):
        import_log(_log(tmp_path / "log.csv"), Mapping(time="t", account="nope"), tmp_path / "out")


@pytest.mark.parametrize("fmt,values,expected", [
    ("iso", ["2024-01-02T03:04:05Z", "2024-01-02 03:04:06"], [1704164645000, 1704164646000]),
    ("s", ["1704164645", "1704164646.5"], [1704164645000, 1704164646500]),
    ("ms", ["1704164645000", "1704164646000"], [1704164645000, 1704164646000]),
])
def test_time_formats_and_parquet(tmp_path, fmt, values, expected):
    pl.DataFrame({"when": values, "acct": ["a", "b"], "dev": ["d1", None]}).write_parquet(tmp_path / "x.parquet")
    s = import_log(tmp_path / "x.parquet", Mapping(time="when", time_format=fmt, account="acct", device="dev"),
                   tmp_path / "out")
    assert s["bad_rows"] == 0
    df, _, _ = load_import(tmp_path / "out")
    assert df["ts"].to_list() == expected


def test_epoch_seconds_mistaken_for_ms_is_a_bad_row(tmp_path):
    (tmp_path / "l.csv").write_text("ts,a\n1704164645,x\n1704164645000,y\n")
    s = import_log(tmp_path / "l.csv", Mapping(time="ts", time_format="ms", account="a"), tmp_path / "o")
    assert s["bad_rows"] == 1 and s["bad_shown"][0]["line"] == 2


def test_sum_windows():
    sw = SumWindows([SumWindow("s", "k", 10)])
    assert sw.observe(0, {"k": "a"}, 1.5) == [1.5]
    assert sw.observe(5_000, {"k": "a"}, 2.0) == [3.5]
    assert sw.observe(10_000, {"k": "a"}, 1.0) == [3.0]  # the first left at age 10 s
    assert sw.observe(10_000, {"k": None}, 1.0) == [0.0]


def test_features_and_training_on_import(tmp_path):
    import_log(_log(tmp_path / "log.csv", n=3000, bad=False), MAP, tmp_path / "out")
    df, mapping, _ = load_import(tmp_path / "out")
    f = imported_features(df, mapping)
    assert f.x.shape[0] == 3000 and "x_shop_accounts_100n" in f.spec.names and "cat_city" in f.spec.categorical
    i = f.spec.names.index("account_n_1000n")
    users = df["account"].to_list()
    assert f.x[50, i] == users[:51].count(users[50])  # counts include the event itself
    out = train_import(tmp_path / "out", split="time", threads=1, features=f)
    assert out["result"].metrics["test"]["auroc"] > 0.8
    out = train_import(tmp_path / "out", split="random", threads=1, features=f)
    assert out["result"].split["mode"] == "random"


def test_cli_import_train_model_commands(tmp_path):
    runner = CliRunner()
    log = _log(tmp_path / "log.csv", n=2000)
    r = runner.invoke(app, ["import", str(log), "--out", str(tmp_path / "imp"), "--time", "t", "--time-format",
                            "order", "--account", "user", "--amount", "amt", "--label", "lab", "--positive", "1",
                            "--negative", "0", "--entity", "shop", "--span", "10", "--span", "100", "--span", "1000"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["import", str(log), "--out", str(tmp_path / "imp2"), "--time", "t", "--time-format",
                            "order", "--account", "user", "--amount", "amt", "--on-error", "refuse"])
    assert r.exit_code == 2
    models = tmp_path / "models"
    r = runner.invoke(app, ["train", "--data", str(tmp_path / "imp"), "--models", str(models), "--name", "shop",
                            "--activate", "--threads", "1", "--json", str(tmp_path / "r.json"),
                            "--html", str(tmp_path / "r.html")])
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "r.json").read_text())
    assert meta["version"] == 1 and meta["split"]["mode"] == "time" and "drift" in meta
    assert "<svg" in (tmp_path / "r.html").read_text() and "<script" not in (tmp_path / "r.html").read_text()
    assert (models / "shop" / "v0001" / "model.txt").is_file()
    r = runner.invoke(app, ["model", "list", "--models", str(models)])
    assert r.exit_code == 0 and "active" in r.output
    r = runner.invoke(app, ["model", "show", "shop", "--models", str(models)])
    assert r.exit_code == 0 and json.loads(r.output)["version"] == 1
    assert runner.invoke(app, ["model", "shadow", "shop", "1", "--models", str(models)]).exit_code == 0
    assert runner.invoke(app, ["model", "rollback", "shop", "--models", str(models)]).exit_code == 2
