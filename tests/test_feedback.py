"""Label feedback (model/feedback.py): strictly causal, delay respected, invisible labels never read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.model.feedback import SMOOTHING, feedback_names, is_fraud_evidence, label_feedback
from woolguard.model.train import monotone_increasing, time_split


def _brute(ts, label, visible, key, delay):
    """Counts and positives of each row's key among labels released strictly before the row's time."""
    n = len(ts)
    out = np.zeros((n, 2))
    for i in range(n):
        m = [j for j in range(n) if visible[j] and label[j] >= 0 and key[j] == key[i] and ts[j] + delay < ts[i]]
        out[i] = (len(m), sum(int(label[j]) for j in m))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(["a", "b", "c"]), st.integers(-1, 1), st.booleans()),
                min_size=1, max_size=40), st.integers(0, 10))
def test_counts_equal_brute_force(rows, delay):
    ts = np.array([r[0] * 1000 for r in rows], dtype=np.int64)
    key = [r[1] for r in rows]
    label = np.array([r[2] for r in rows], dtype=np.int64)
    visible = np.array([r[3] for r in rows])
    fb, names = label_feedback(ts, label, visible, {"account": key}, delay_ms=delay * 1000,
                               half_lives_ms=[5000], half_life_names=["5s"])
    assert names == ["account_lab_n", "account_lab_pos", "account_lab_rate", "account_lab_n_5s",
                     "account_lab_rate_5s"]
    np.testing.assert_array_equal(fb[:, :2], _brute(ts, label, visible, key, delay * 1000))
    assert np.all((fb[:, 2] > 0) & (fb[:, 2] < 1))
    assert np.all(fb[:, 3] <= fb[:, 0] + 1e-9)  # decayed count never exceeds the plain one


def test_own_and_invisible_labels_never_read():
    ts = np.arange(6, dtype=np.int64) * 1000
    label = np.array([1, 1, 1, 0, 1, 1])
    key = ["k"] * 6
    visible = np.array([True, True, False, True, True, True])
    fb, _ = label_feedback(ts, label, visible, {"account": key}, delay_ms=0)
    # row 3 sees rows 0 and 1 (row 2's label is invisible), row 5 sees 0, 1, 3, 4
    assert fb[3, 0] == 2 and fb[3, 1] == 2
    assert fb[5, 0] == 4 and fb[5, 1] == 3
    assert fb[0, 0] == 0  # never its own label
    # changing a label changes no earlier row, nor any row within the delay
    label2 = label.copy()
    label2[3] = 1
    fb2, _ = label_feedback(ts, label2, visible, {"account": key}, delay_ms=1500)
    fb1, _ = label_feedback(ts, label, visible, {"account": key}, delay_ms=1500)
    np.testing.assert_array_equal(fb1[:5], fb2[:5])
    assert fb1[5, 1] + 1 == fb2[5, 1]


def test_smoothed_rate_is_pulled_to_prior():
    ts = np.arange(4, dtype=np.int64) * 1000
    fb, _ = label_feedback(ts, np.array([1, 0, 0, 0]), np.ones(4, bool), {"a": ["x", "y", "y", "x"]}, delay_ms=0)
    prior = (1 + 1) / (3 + 2)  # three labels known before row 3, one positive
    assert fb[3, 2] == pytest.approx((1 + SMOOTHING * prior) / (1 + SMOOTHING))


def test_test_labels_never_reach_training_rows_in_strict_mode():
    from woolguard.model.features import FeatureSpec
    from woolguard.model.importer import ImportedFeatures, Mapping
    from woolguard.model.pipeline import with_feedback

    n = 200
    rng = np.random.default_rng(1)
    ts = np.arange(n, dtype=np.int64) * 1000 + 1_600_000_000_000
    y = rng.integers(0, 2, n)
    keys = {"account": [f"a{i % 7}" for i in range(n)]}
    f = ImportedFeatures(np.zeros((n, 1)), FeatureSpec(["z"]), y, ts, [str(i) for i in range(n)], np.zeros(n),
                         np.arange(n), keys)
    m = Mapping(time="t", account="a", time_format="order", label_delay=3)
    sp = time_split(ts, y, 0.3)
    x1, spec, info = with_feedback(f, m, sp, "strict")
    y2 = y.copy()
    y2[sp.test] = 1 - y2[sp.test]  # flip every test label
    f.label = y2
    x2, _, _ = with_feedback(f, m, sp, "strict")
    np.testing.assert_array_equal(x1, x2)  # strict: test labels change nothing, test rows included
    x3, _, _ = with_feedback(f, m, sp, "delayed")
    assert not np.array_equal(x1[sp.test], x3[sp.test])
    first_test = sp.test.min()
    np.testing.assert_array_equal(x1[: first_test + 4], x3[: first_test + 4])  # the delay: 3 units
    assert info["delay_ms"] == 3000 and "account_lab_rate" in spec.names
    with pytest.raises(ValueError, match="time split"):
        from woolguard.model.train import random_split
        with_feedback(f, m, random_split(y, 0.4), "delayed")


def test_large_category_becomes_a_feedback_key(tmp_path):
    from woolguard.model.importer import MAX_RAW_CATEGORIES, Mapping, import_log, imported_features, load_import

    n = 300
    lines = ["t,user,shop,city,lab"] + [f"{i},u{i % 13},s{i % (MAX_RAW_CATEGORIES + 5)},c{i % 3},{i % 2}"
                                         for i in range(n)]
    (tmp_path / "log.csv").write_text("\n".join(lines) + "\n")
    import_log(tmp_path / "log.csv", Mapping(time="t", account="user", time_format="order", label="lab",
                                             categories=["shop", "city"]), tmp_path / "imp")
    df, m, _ = load_import(tmp_path / "imp")
    f = imported_features(df, m)
    assert "cat_city" in f.spec.names and "cat_shop" not in f.spec.names
    assert list(f.keys) == ["account", "c_shop"]
    since = f.x[:, f.spec.names.index("account_since_last")]
    assert np.isnan(since[0]) and since[13] == 13.0  # u0 again after 13 orders


def test_fraud_evidence_is_monotone():
    """Known fraud counts and rates (plain and decayed) constrain the model to rise with them; counts of labelled
    events do not (many clean labels are evidence too)."""
    names = feedback_names(["account", "c_Target"], [1000, 10000], ["1kn", "10kn"])
    up = [n for n in names if monotone_increasing(n)]
    assert up == [n for n in names if is_fraud_evidence(n)]
    assert up == ["account_lab_pos", "account_lab_rate", "account_lab_rate_1kn", "account_lab_rate_10kn",
                  "c_Target_lab_pos", "c_Target_lab_rate", "c_Target_lab_rate_1kn", "c_Target_lab_rate_10kn"]
    assert monotone_increasing("gang_score") and not monotone_increasing("account_n_1kn")
