"""Gang detection: planted rings are found, popular attributes glue nobody, camouflage does not hide a
FRAUDAR block, invite farms stand out, results are deterministic."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from woolguard.gangs import (
    build_graph,
    camouflage_weights,
    dense_blocks,
    detect_gangs,
    invite_farms,
    node_features,
    symmetric_adjacency,
)
from woolguard.gangs.metrics import auprc, auroc

TYPES = ["device_id", "phone_block", "ip24", "address", "device_fp"]


def population(n_genuine=3000, rings=((20, 0), (15, 1), (30, 2)), mall=500, seed=0):
    """Genuine accounts with their own rare attributes (and some random popular ones), rings sharing
    a few devices / phone blocks / IPs, and a mall Wi-Fi shared by ``mall`` genuine accounts."""
    rng = np.random.default_rng(seed)
    acc, typ, val, ts = [], [], [], []

    def link(a, t, v, when):
        acc.append(a)
        typ.append(t)
        val.append(v)
        ts.append(when)

    for a in range(n_genuine):
        link(a, "device_id", f"dev-g{a}", int(rng.integers(0, 86400 * 7)))
        link(a, "phone_block", f"pb-{rng.integers(0, 400)}", 0)
        link(a, "device_fp", f"fp-{rng.integers(0, 30)}", 0)  # popular phone models
    for a in rng.choice(n_genuine, size=mall, replace=False):
        link(int(a), "ip24", "mall-wifi", 3600 * 10 + int(rng.integers(0, 3600)))
    truth = {}
    nxt = n_genuine
    for r, (size, _) in enumerate(rings):
        members = list(range(nxt, nxt + size))
        nxt += size
        truth[r] = members
        for i, a in enumerate(members):
            link(a, "device_id", f"dev-r{r}-{i % 3}", 50_000 + i * 30)
            link(a, "phone_block", f"pb-ring{r}", 0)
            link(a, "ip24", f"ip-ring{r}", 50_000 + i * 30)
            link(a, "device_fp", f"fp-{rng.integers(0, 30)}", 0)
    return (np.array(acc), np.array(typ), np.array(val), np.array(ts)), truth, n_genuine


def test_planted_rings_recovered_and_mall_wifi_glues_nobody():
    cols, truth, n_genuine = population()
    g = build_graph(*cols)
    report = detect_gangs(g, seed=0)
    flagged = set(np.asarray(g.accounts)[report.gang_score > 0].tolist())
    planted = {a for m in truth.values() for a in m}
    precision = len(flagged & planted) / max(len(flagged), 1)
    recall = len(flagged & planted) / len(planted)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    # no gang is made of mall Wi-Fi users
    for gang in report.gangs:
        genuine = sum(1 for m in gang.members if int(m) < n_genuine)
        assert genuine <= 2, gang.as_row()
    top = report.gangs[0]
    assert top.shared_attributes and top.first_ts <= top.last_ts
    assert report.gang_size[report.gang_score > 0].min() >= 3


def test_deterministic():
    cols, _, _ = population(seed=3)
    a = detect_gangs(build_graph(*cols), seed=0)
    b = detect_gangs(build_graph(*cols), seed=0)
    assert [g.as_row() for g in a.gangs] == [g.as_row() for g in b.gangs]
    np.testing.assert_array_equal(a.gang_score, b.gang_score)


def test_fraudar_block_survives_camouflage():
    rng = np.random.default_rng(1)
    n_acc, n_attr = 2000, 1500
    rows = list(rng.integers(0, n_acc, 6000))
    cols = list(rng.integers(0, n_attr, 6000))
    fraud = np.arange(40)
    targets = np.arange(n_attr - 25, n_attr)
    popular = np.arange(30)  # camouflage goes to popular genuine attributes
    for a in fraud:
        for t in targets:
            if rng.random() < 0.8:
                rows.append(a)
                cols.append(t)
        for t in rng.choice(popular, 10, replace=False):  # as many camouflage links as real ones
            rows.append(a)
            cols.append(t)
    for a in range(100, n_acc):  # popular attributes are popular
        if rng.random() < 0.5:
            rows.append(a)
            cols.append(int(rng.choice(popular)))
    b = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_acc, n_attr))
    blocks, score = dense_blocks(camouflage_weights(b), n_blocks=3, min_accounts=3, min_lift=2.0)
    assert blocks
    found = set(blocks[0].accounts.tolist())
    assert len(found & set(fraud.tolist())) >= 38 and len(found - set(fraud.tolist())) <= 2
    assert set(blocks[0].attributes.tolist()) >= set(targets.tolist()) - set()
    y = np.zeros(n_acc, bool)
    y[fraud] = True
    assert auroc(score, y) > 0.99


def test_invite_farm_stands_out():
    rng = np.random.default_rng(2)
    inviter, invitee, ts, created, traits = [], [], [], [], []
    child = 10_000
    for p in range(200):  # genuine: a few friends over weeks, varied phones
        for _ in range(int(rng.integers(0, 7))):
            t = int(rng.integers(0, 86400 * 30))
            inviter.append(p)
            invitee.append(child)
            ts.append(t)
            created.append(t - int(rng.integers(86400 * 2, 86400 * 400)))
            traits.append(int(rng.integers(0, 50)))
            child += 1
    for _ in range(40):  # the farm: 40 fresh look-alikes in half an hour
        t = 86400 * 5 + int(rng.integers(0, 1800))
        inviter.append(999)
        invitee.append(child)
        ts.append(t)
        created.append(t - int(rng.integers(60, 600)))
        traits.append(7)
        child += 1
    farms = invite_farms(
        np.array(inviter), np.array(invitee), np.array(ts), np.array(created), np.array(traits)[:, None]
    )
    assert [f.inviter for f in farms] == [999]
    assert farms[0].score > 0.9 and farms[0].children.size == 40


def test_node_features_no_self_label_leak():
    rng = np.random.default_rng(0)
    n = 300
    edges = rng.integers(0, n, size=(1500, 2))
    adj = symmetric_adjacency(edges, n)
    y = rng.random(n) < 0.3
    mask = rng.random(n) < 0.5
    comm = rng.integers(0, 5, n)
    f1 = node_features(adj, rng.random((n, 3)), y, mask, communities=comm)
    y2 = y.copy()
    y2[0] = ~y2[0]  # flipping a node's own label leaves its label features unchanged
    f2 = node_features(adj, None, y2, mask, communities=comm)
    f1b = node_features(adj, None, y, mask, communities=comm)
    names = f2.names
    # only the global base rate (the smoothing prior) may move, by about 1 / n_labelled
    assert f2.values[0, names.index("nbr_positive")] == f1b.values[0, names.index("nbr_positive")]
    for name in ("nbr_label_rate", "hop2_label_rate", "community_label_rate"):
        j = names.index(name)
        assert abs(f2.values[0, j] - f1b.values[0, j]) < 5e-3, name
    assert f1.values.shape[0] == n and np.isfinite(f1.values[:, f1.names.index("nbr_label_rate")]).all()


def test_metrics():
    s = np.array([0.9, 0.8, 0.7, 0.1])
    y = np.array([1, 0, 1, 0])
    assert auroc(s, y) == 0.75
    assert abs(auprc(s, y) - (1 + 2 / 3) / 2) < 1e-12
