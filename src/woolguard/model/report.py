"""The training report: JSON (everything in the artifact's metadata) and a self-contained HTML page with ROC and
PR curves, feature importance and drift as inline SVG (no script, nothing downloaded)."""

from __future__ import annotations

import html
from typing import Any


def _svg_curve(points: list[list[float]], title: str, xlab: str, ylab: str, diagonal: bool = False) -> str:
    w, h, m = 320, 260, 36
    pw, ph = w - 2 * m, h - 2 * m

    def xy(p: list[float]) -> str:
        return f"{m + p[0] * pw:.1f},{m + (1 - p[1]) * ph:.1f}"

    line = " ".join(xy(p) for p in points)
    diag = (f'<line x1="{m}" y1="{m + ph}" x2="{m + pw}" y2="{m}" stroke="#bbb" stroke-dasharray="4"/>'
            if diagonal else "")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{title}">'
            f'<rect x="{m}" y="{m}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>{diag}'
            f'<polyline fill="none" stroke="#c0392b" stroke-width="2" points="{line}"/>'
            f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="13">{html.escape(title)}</text>'
            f'<text x="{w / 2}" y="{h - 6}" text-anchor="middle" font-size="11">{xlab}</text>'
            f'<text x="12" y="{h / 2}" font-size="11" transform="rotate(-90 12 {h / 2})" text-anchor="middle">'
            f'{ylab}</text>'
            f'<text x="{m}" y="{m + ph + 12}" font-size="9">0</text><text x="{m + pw - 6}" y="{m + ph + 12}" '
            f'font-size="9">1</text></svg>')


def _svg_bars(items: list[tuple[str, float]], title: str) -> str:
    row, label_w, bar_w = 16, 220, 260
    h = 30 + row * len(items)
    top = max((v for _, v in items), default=1.0) or 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" height="{h}" role="img" '
             f'aria-label="{title}"><text x="4" y="16" font-size="13">{html.escape(title)}</text>']
    for i, (name, v) in enumerate(items):
        y = 26 + i * row
        parts.append(f'<text x="{label_w - 4}" y="{y + 11}" font-size="11" text-anchor="end">{html.escape(name)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{bar_w * v / top:.1f}" height="{row - 4}" fill="#2c7fb8"/>'
                     f'<text x="{label_w + bar_w * v / top + 4:.1f}" y="{y + 11}" font-size="10">{v:.3f}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def _window(w: dict[str, Any]) -> str:
    return f"{w.get('rows')} [{w.get('first_ts')} .. {w.get('last_ts')}]"


def render_html(report: dict[str, Any], title: str = "woolguard model report") -> str:
    m = report.get("metrics", {})
    test = m.get("test", {})
    valid = m.get("valid", {})
    curves = report.get("curves", {})
    split = report.get("split", {})
    drift = report.get("drift", {})
    imp = [(d["feature"], d["gain_share"]) for d in report.get("importance", [])[:20]]
    drift_items = list(drift.get("features", {}).items())[:15]
    rows = [
        ("model", f"{report.get('name', '')} v{report.get('version', '')}"),
        ("split", f"{split.get('mode')} (test share {split.get('test_frac')})"),
        ("train rows [first ts .. last ts]", _window(split.get("train", {}))),
        ("test rows [first ts .. last ts]", _window(split.get("test", {}))),
        ("test AUROC / AUPRC", f"{test.get('auroc')} / {test.get('auprc')}"),
        ("validation AUROC / AUPRC", f"{valid.get('auroc')} / {valid.get('auprc')}"),
        ("test recall at FPR", test.get("recall_at_fpr")),
        ("levels (calibrated p)", [round(v, 4) for v in report.get("levels", [])]),
        ("score PSI (train → test)", f"{drift.get('score_psi')} (alert above {drift.get('alert_threshold')})"),
        ("drift alerts", ", ".join(drift.get("alerts", [])) or "none"),
        ("rounds", report.get("rounds")),
    ]
    if report.get("evaluation"):
        for k, v in report["evaluation"].items():
            rows.append((f"evaluation: {k}", v))
    body = [f"<h1>{html.escape(title)}</h1>", _table(rows), "<div class='charts'>",
            _svg_curve(curves.get("roc", []), "ROC (test)", "false-positive rate", "recall", diagonal=True),
            _svg_curve(curves.get("pr", []), "Precision-recall (test)", "recall", "precision"), "</div>",
            _svg_bars(imp, "feature importance (share of gain)"),
            _svg_bars([(k, min(v, 5.0)) for k, v in drift_items], "PSI train → test (capped at 5)")]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
             "th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:13px}.charts{display:flex;gap:1em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")
