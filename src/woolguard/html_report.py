"""A self-contained HTML page of a demo or replay report: tables and inline SVG charts, no scripts."""

from __future__ import annotations

import html
from typing import Any


def _bar_chart(title: str, rows: list[tuple[str, float]], unit: str = "%", width: int = 560) -> str:
    bar_h, gap, label_w = 22, 8, 150
    top = max([v for _, v in rows] + [1.0])
    h = len(rows) * (bar_h + gap) + 30
    parts = [f'<svg width="{width}" height="{h}" role="img" aria-label="{html.escape(title)}">',
             f'<text x="0" y="16" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(rows):
        y = 28 + i * (bar_h + gap)
        w = (width - label_w - 70) * (value / top)
        parts.append(f'<text x="0" y="{y + 16}">{html.escape(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="#c0392b"></rect>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{value:.1f}{unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _timeline(hourly: dict[str, dict[str, int]], width: int = 760, height: int = 220) -> str:
    hours = sorted(int(h) for h in hourly)
    if not hours:
        return ""
    series = ["genuine_paid", "genuine_stopped", "gang_paid", "gang_stopped"]
    colours = {"genuine_paid": "#2e86c1", "genuine_stopped": "#f5b041", "gang_paid": "#c0392b",
               "gang_stopped": "#7f8c8d"}
    top = max(sum(hourly[str(h)].values()) for h in hours) or 1
    bw = max(1.0, (width - 40) / (hours[-1] + 1))
    parts = [f'<svg width="{width}" height="{height + 56}" role="img" aria-label="claims per hour">',
             '<text x="0" y="14" font-weight="bold">Claims per hour, by who and what happened</text>']
    for h in hours:
        y = height + 20.0
        for s in series:
            n = hourly[str(h)].get(s, 0)
            bh = height * n / top
            y -= bh
            parts.append(f'<rect x="{30 + h * bw:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{bh:.1f}" '
                         f'fill="{colours[s]}"></rect>')
    parts.append(f'<text x="0" y="30" font-size="11">{top}</text><text x="0" y="{height + 20}" font-size="11">0</text>')
    for h in range(0, hours[-1] + 1, 12):
        parts.append(f'<text x="{30 + h * bw:.1f}" y="{height + 32}" font-size="10">{h} h</text>')
    for i, s in enumerate(series):
        parts.append(f'<rect x="{30 + i * 170}" y="{height + 40}" width="10" height="10" fill="{colours[s]}"></rect>'
                     f'<text x="{44 + i * 170}" y="{height + 49}">{s.replace("_", " ")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict[str, Any], title: str = "woolguard report") -> str:
    arch = report.get("archetypes", {})
    gen = report.get("genuine", {})
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{a['accounts']}</td><td>{a['claims']}</td>"
        f"<td>{a['caught_pct']:.1f}%</td><td>{a['prize_paid']:.2f}</td><td>{a['prize_saved']:.2f}</td></tr>"
        for n, a in arch.items())
    perf = report.get("perf", {})
    gangs = report.get("gangs")
    gang_html = ""
    if gangs:
        before, after = gangs.get("prize_taken_before_detection"), gangs.get("prize_taken_after_detection")
        split = (f" ({before:.2f} before they were detected, {after:.2f} after)"
                 if before is not None and after is not None else "")
        gang_html = (f"<h2>Gangs</h2><p>{gangs.get('gangs_found', 0)} gangs found, "
                     f"{gangs.get('accounts', 0)} accounts; money they took: "
                     f"{gangs.get('prize_taken', 0):.2f} yuan{split}.</p>")
        top = gangs.get("top") or []
        if top:
            gang_html += ("<table><tr><th>gang</th><th>detector</th><th>size</th><th>score</th><th>what ties them</th>"
                          "</tr>" + "".join(
                              f"<tr><td>{g['gang_id']}</td><td>{html.escape(str(g['detector']))}</td><td>{g['size']}</td>"
                              f"<td>{g['score']}</td><td style='text-align:left'>"
                              f"{html.escape('; '.join(map(str, g.get('shared_attributes', [])[:3])))}</td></tr>"
                              for g in top[:10]) + "</table>")
    reasons = "".join(
        f"<tr><td>{html.escape(name)}</td><td style='text-align:left'>"
        f"{html.escape(', '.join(f'{k} ({v})' for k, v in list(g.get('top_reasons', {}).items())[:5]))}</td></tr>"
        for name, g in [*arch.items(), ("genuine", gen)])
    gang_html = (f"<h2>Top reasons</h2><table><tr><th>who</th><th>reasons on payout claims (count)</th></tr>"
                 f"{reasons}</table>") + gang_html
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{report.get('events', 0)} events decided; {perf.get('decisions_per_s', 0):.0f} decisions/s,
p50 {perf.get('p50_ms', 0)} ms, p99 {perf.get('p99_ms', 0)} ms.</p>
<h2>Wool-party archetypes</h2>
<table><tr><th>archetype</th><th>accounts</th><th>claims</th><th>caught</th><th>paid (yuan)</th>
<th>saved (yuan)</th></tr>{rows}</table>
<h2>Genuine shoppers</h2>
<p>{gen.get('accounts', 0)} accounts, {gen.get('claims', 0)} claims: {gen.get('rejected_pct', 0):.2f}% rejected,
{gen.get('challenged_pct', 0):.2f}% challenged or reviewed; {gen.get('prize_paid', 0):.2f} yuan paid.</p>
{_bar_chart("Claims caught per archetype", [(n, a['caught_pct']) for n, a in arch.items()])}
{_bar_chart("Genuine friction", [("rejected", gen.get('rejected_pct', 0.0)),
                                 ("challenged", gen.get('challenged_pct', 0.0))])}
{_timeline(report.get('hourly', {}))}
{gang_html}
</body></html>"""
