"""The ``woolguard`` command line: demo, simulate, replay, explain, policies and reasons."""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="woolguard: decide each campaign event's risk, find gangs, keep budgets exact.")
policy_app = typer.Typer(no_args_is_help=True, help="Check and show policies.")
app.add_typer(policy_app, name="policy")
# Reports are wide: keep them readable when the output is a pipe or a CI log.
console = Console() if sys.stdout.isatty() else Console(width=120)
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


def _engine(policy: Path | None, ip_lists: list[str] | None, campaigns: dict[str, Any] | None = None,
            campaign_policies: list[str] | None = None) -> Any:
    from woolguard.engine import CampaignInfo, Engine
    from woolguard.runtime import tune_gc

    tune_gc()
    from woolguard.reputation.network import IpBook
    from woolguard.rules.policy import PolicyError

    ips = None
    if ip_lists:
        paths = {}
        for item in ip_lists:
            name, sep, path = item.partition("=")
            if not sep or name not in ("datacenter", "proxy", "bad"):
                _fail(f"--ip-list takes NAME=PATH with NAME datacenter, proxy or bad; got {item!r}")
            paths[name] = path
        try:
            ips = IpBook.from_files(paths)
        except (OSError, ValueError) as exc:
            _fail(str(exc))
    engine = Engine(ips=ips)
    if policy is not None:
        try:
            engine.set_policy(engine.load_policy_text(policy.read_text("utf-8"), str(policy)))
        except PolicyError as exc:
            _fail(f"policy refused: {exc}")
        except OSError as exc:
            _fail(f"cannot read {policy}: {exc.strerror}")
    for item in campaign_policies or []:
        cid, sep, path = item.partition("=")
        if not sep or not cid:
            _fail(f"--campaign-policy takes CAMPAIGN_ID=PATH, got {item!r}")
        try:
            engine.set_policy(engine.load_policy_text(Path(path).read_text("utf-8"), path), campaign_id=cid)
        except PolicyError as exc:
            _fail(f"policy refused: {exc}")
        except OSError as exc:
            _fail(f"cannot read {path}: {exc.strerror}")
    for cid, info in (campaigns or {}).items():
        engine.campaigns[cid] = CampaignInfo(cid, int(info["start_ms"]), info.get("end_ms"))
    return engine


def _stored_campaign_policies(engine: Any, url: str, keep: set[str], tenant: str = "default") -> None:
    """Load the policies named by the rules of the campaigns stored at ``url`` into ``engine``."""
    from woolguard.campaigns.policies import campaign_policy_keys, load_campaign_policies
    from woolguard.rules.policy import PolicyError
    from woolguard.storage import open_database

    explicit = {cid: p for cid, p in engine.campaign_policies.items() if cid in keep}
    database = open_database(url)
    try:
        with database.connect() as conn:
            keys = {cid: k for cid, k in campaign_policy_keys(conn, tenant).items() if cid not in keep}
            load_campaign_policies(conn, tenant, engine, keys=keys)
    except PolicyError as exc:
        _fail(f"a campaign's stored policy is refused: {exc}")
    finally:
        database.close()
    engine.campaign_policies = {**engine.campaign_policies, **explicit}
    for cid, key in sorted(keys.items()):
        err.print(f"campaign {cid}: decided with its policy {key[0]}@{key[1]}")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=False, disable=not err.is_terminal)


def _print_report(report: dict[str, Any]) -> None:
    t = Table(title=f"woolguard — {report['events']:,} events decided")
    for col in ("who", "accounts", "claims", "caught / not paid", "rejected", "challenged", "paid ¥", "saved ¥"):
        t.add_column(col, justify="right" if col != "who" else "left")
    for name, a in report["archetypes"].items():
        t.add_row(name, f"{a['accounts']:,}", f"{a['claims']:,}", f"{a['caught_pct']:.1f}%",
                  f"{a['rejected_pct']:.1f}%", f"{a['challenged_pct']:.1f}%", f"{a['prize_paid']:,.2f}",
                  f"{a['prize_saved']:,.2f}")
    g = report["genuine"]
    t.add_row("[green]genuine[/]", f"{g['accounts']:,}", f"{g['claims']:,}", f"{g['not_paid_pct']:.1f}%",
              f"{g['rejected_pct']:.2f}%", f"{g['challenged_pct']:.2f}%", f"{g['prize_paid']:,.2f}", "-")
    console.print(t)
    p = report["perf"]
    console.print(f"engine: {p['decisions_per_s']:,.0f} decisions/s, p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms")
    if report.get("decision_log"):
        console.print(f"decision log: {report['decision_log']}  (try: woolguard explain EVENT_ID)")


def _run(events: Iterator[Any], total: int | None, engine: Any, log_url: str | None, label: str,
         payouts: dict[str, Any] | None = None) -> dict[str, Any]:
    """Decide ``events``; with ``payouts`` (``{"url", "info", "scale"}``) every payout of the simulated
    campaign is settled through real campaigns and the ledger at ``url``, and the money figures are read
    back from the ledger."""
    from woolguard.report import Report, decide_stream
    from woolguard.sim import challenge_passed

    book = conn = ledger_db = None
    plan = None
    ids: list[str] = []
    tenant = "default"
    if payouts is not None:
        from functools import partial

        from woolguard.campaigns import CampaignError
        from woolguard.campaigns.batch import PayoutBook
        from woolguard.sim.payouts import payout_for, setup_campaigns
        from woolguard.storage import open_database

        ledger_db = open_database(payouts["url"])
        conn = ledger_db.connect()
        try:
            ids = setup_campaigns(conn, tenant, payouts["info"], payouts.get("scale", 1.0))
        except CampaignError as exc:
            _fail(str(exc))
        book = PayoutBook(conn, tenant, batch_size=5000)
        plan = partial(payout_for, payouts["info"])
    report = Report(challenge_passed, book=book, plan=plan)
    log = None
    if log_url:
        from woolguard.storage import DecisionLog, open_database

        log = DecisionLog(open_database(log_url), batch_size=2000)
    with _progress() as progress:
        task = progress.add_task(label, total=total)
        decide_stream(events, engine, report, sink=log.append if log else None,
                      progress=lambda n: progress.advance(task, n))
    if log is not None:
        log.close()
    out = report.to_dict()
    if log_url:
        out["decision_log"] = log_url
    if conn is not None and ledger_db is not None and book is not None:
        out["ledger"] = _ledger_section(report, out, conn, tenant, ids, payouts or {})
        out["ledger"]["batches"] = book.batches
        conn.close()
        ledger_db.close()
    return out


def _ledger_section(report: Any, out: dict[str, Any], conn: Any, tenant: str, ids: list[str],
                    payouts: dict[str, Any]) -> dict[str, Any]:
    """Money figures replaced by SUMs over the ledger, plus each campaign's budget and the audit."""
    from woolguard.campaigns import service as S
    from woolguard.campaigns.ledger import audit
    from woolguard.report import GENUINE, ledger_figures

    money = ledger_figures(report, conn, tenant, ids)
    paid, refused = money["paid_fen"], money["refused_fen"]
    for name, a in out["archetypes"].items():
        a["prize_paid"], a["prize_saved"] = paid.get(name, 0) / 100, refused.get(name, 0) / 100
    out["genuine"]["prize_paid"] = paid.get(GENUINE, 0) / 100
    out["genuine"]["prize_lost_to_friction"] = refused.get(GENUINE, 0) / 100
    out["totals"]["prize_paid"] = sum(paid.values()) / 100
    out["totals"]["prize_saved"] = sum(v for k, v in refused.items() if k != GENUINE) / 100
    camps = []
    for cid in ids:
        st = S.campaign_state(conn, tenant, cid)
        camps.append({"id": cid, "kind": st["kind"], "name": st["name"], "budget_fen": st["budget_fen"],
                      "spent_fen": st["spent_fen"], "daily_cap_fen": st["rules"].get("daily_cap_fen"),
                      "limits": st["rules"].get("limits", {})})
    conn.commit()
    found = audit(conn, tenant)
    conn.commit()
    return {"db": payouts.get("url"), "tenant": tenant, "money_source": "ledger", "campaigns": camps,
            "overspent": found["overspent"], "paid_twice": found["paid_twice"]}


def _write_outputs(report: dict[str, Any], json_path: Path | None, html_path: Path | None, title: str) -> None:
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
        console.print(f"wrote {json_path}")
    if html_path:
        from woolguard.html_report import render_html

        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(report, title), "utf-8")
        console.print(f"wrote {html_path}")


#: How far back in time replay re-sorts a recorded stream (10 minutes).
REORDER_MS = 600_000

JsonOpt = Annotated[Path | None, typer.Option("--json", help="Write the report as JSON here.")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write an HTML page with charts here.")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Policy file (default: the shipped policy).")]
IpListOpt = Annotated[list[str] | None, typer.Option("--ip-list", help="Extra CIDR list, NAME=PATH (repeatable).")]
DbOpt = Annotated[str | None, typer.Option("--db", help="Decision-log database URL "
                                           "(default: $WOOLGUARD_DATABASE_URL or sqlite:///woolguard.db).")]


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    scale: Annotated[float, typer.Option(help="Population scale (1 = about 200k events).")] = 1.0,
    json_path: JsonOpt = None,
    html_path: HtmlOpt = None,
    policy: PolicyOpt = None,
    db: DbOpt = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not write the decision log.")] = False,
) -> None:
    """Simulate a campaign with labelled gangs, decide every event, and report what was caught."""
    from woolguard.sim import SimConfig, campaign_info, simulate
    from woolguard.storage import default_url

    cfg = SimConfig(seed=seed, scale=scale)
    info = campaign_info(cfg)
    engine = _engine(policy, None, {info["campaign_id"]: info})
    url = None if no_log else (db or default_url())
    with tempfile.TemporaryDirectory(prefix="woolguard-demo-") as tmp:
        # the payouts go through real campaigns and their ledger: in the decision-log database, or a
        # throw-away one with --no-log
        ledger_url = url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        report = _run(simulate(cfg), None, engine, url, "deciding",
                      payouts={"url": ledger_url, "info": info, "scale": scale})
    if url is None:
        report["ledger"]["db"] = None
    report["campaign"] = info
    report["seed"] = seed
    _print_report(report)
    _write_outputs(report, json_path, html_path, f"woolguard demo (seed {seed})")


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Write the traffic here as JSON lines.")],
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    scale: Annotated[float, typer.Option(help="Population scale (1 = about 200k events).")] = 1.0,
) -> None:
    """Write simulated, labelled campaign traffic as JSON lines (one event a line)."""
    from woolguard.sim import SimConfig, campaign_info, write_jsonl
    from woolguard.sim import simulate as sim

    cfg = SimConfig(seed=seed, scale=scale)
    info = campaign_info(cfg)
    with _progress() as progress:
        task = progress.add_task("simulating", total=None)

        def stream() -> Iterator[Any]:
            for i, ev in enumerate(sim(cfg), start=1):
                if i % 5000 == 0:
                    progress.advance(task, 5000)
                yield ev

        n = write_jsonl(stream(), out, info)
    console.print(f"wrote {n:,} events to {out}")


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="A JSON-lines event file (woolguard simulate --out, or yours).")],
    json_path: JsonOpt = None,
    html_path: HtmlOpt = None,
    policy: PolicyOpt = None,
    ip_list: IpListOpt = None,
    campaign: Annotated[list[str] | None, typer.Option(
        "--campaign", help="Campaign start, ID=START (epoch ms or ISO time); overrides the file's header.")] = None,
    campaign_policy: Annotated[list[str] | None, typer.Option(
        "--campaign-policy", help="A campaign's own policy, ID=PATH (repeatable); others use --policy.")] = None,
    db: DbOpt = None,
    log: Annotated[bool, typer.Option("--log/--no-log", help="Also write the decision log.")] = False,
) -> None:
    """Decide a recorded stream in time order and report by its ``truth`` labels."""
    from datetime import datetime

    from woolguard.events import EventError
    from woolguard.sim import read_jsonl

    if not path.exists():
        _fail(f"no such file: {path}")
    try:
        header, events = read_jsonl(path)
    except EventError as exc:
        _fail(str(exc))
    campaigns: dict[str, Any] = {}
    sim_campaign = None
    if header:
        hc = header if "campaign_id" in header else header.get("campaign", header)
        if isinstance(hc, dict) and "campaign_id" in hc and "start_ms" in hc:
            campaigns[hc["campaign_id"]] = hc
            if "end_ms" in hc and "prize_tiers" in hc:  # the simulator's campaign: pay through the ledger
                sim_campaign = hc
    for item in campaign or []:
        cid, sep, start = item.partition("=")
        if not sep:
            _fail(f"--campaign takes ID=START, got {item!r}")
        try:
            start_ms = int(start) if start.isdigit() else int(datetime.fromisoformat(start).timestamp() * 1000)
        except ValueError:
            _fail(f"--campaign {item!r}: START must be epoch milliseconds or an ISO time with a zone")
        campaigns[cid] = {"campaign_id": cid, "start_ms": start_ms}
    engine = _engine(policy, ip_list, campaigns, campaign_policy)
    if db:  # campaigns stored there decide their events with their own policy (--campaign-policy wins)
        _stored_campaign_policies(engine, db, {item.partition("=")[0] for item in campaign_policy or []})
    url = (db or __import__("woolguard.storage", fromlist=["default_url"]).default_url()) if log else None

    def ordered() -> Iterator[Any]:
        # Real logs are a little out of order: a reorder buffer puts events back in time order as long as
        # none arrives more than REORDER_MS after a later one; memory holds only that much traffic.
        import heapq

        buffer: list[tuple[int, int, Any]] = []
        newest = None
        released = None
        for seq, ev in enumerate(events):
            if released is not None and ev.ts < released:
                _fail(f"events must be in time order: event {ev.event_id} is {(newest - ev.ts) / 1000:.0f} s "
                      f"earlier than one before it (up to {REORDER_MS // 60_000} minutes of disorder is re-sorted)")
            newest = ev.ts if newest is None else max(newest, ev.ts)
            heapq.heappush(buffer, (ev.ts, seq, ev))
            while buffer and buffer[0][0] <= newest - REORDER_MS:
                released = buffer[0][0]
                yield heapq.heappop(buffer)[2]
        while buffer:
            yield heapq.heappop(buffer)[2]

    try:
        with tempfile.TemporaryDirectory(prefix="woolguard-replay-") as tmp:
            payouts = None
            if sim_campaign is not None:
                payouts = {"url": url or f"sqlite:///{Path(tmp) / 'ledger.db'}", "info": sim_campaign,
                           "scale": float(sim_campaign.get("scale", 1.0))}
            report = _run(ordered(), None, engine, url, f"replaying {path.name}", payouts=payouts)
            if url is None and "ledger" in report:
                report["ledger"]["db"] = None
    except EventError as exc:
        _fail(str(exc))
    report["source"] = str(path)
    _print_report(report)
    _write_outputs(report, json_path, html_path, f"woolguard replay of {path.name}")


@app.command()
def explain(
    event_id: Annotated[str, typer.Argument(help="Event id or decision id.")],
    db: DbOpt = None,
    tenant: Annotated[str, typer.Option(help="Tenant.")] = "default",
    lang: Annotated[str, typer.Option(help="Language of the reason texts: en or zh.")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Show why an event got its decision: every reason, the values that fired it, all features."""
    from woolguard.storage.explain import explain_command

    if lang not in ("en", "zh"):
        _fail("--lang must be en or zh")
    raise typer.Exit(explain_command(event_id, url=db, tenant=tenant, lang=lang, as_json=as_json))


@app.command()
def reasons(markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table.")] = False) -> None:
    """List the reason-code taxonomy."""
    from woolguard.reasons import CODES, markdown_table

    if markdown:
        print(markdown_table())
        return
    t = Table(title="reason codes")
    for col in ("code", "category", "en", "zh"):
        t.add_column(col)
    for c in CODES.values():
        t.add_row(c.code, c.category.value, c.en, c.zh)
    console.print(t)


@policy_app.command("check")
def policy_check(path: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).")]) -> None:
    """Validate a policy: syntax, feature names, reason codes, outcomes. Exit 1 if it is refused."""
    from woolguard.engine import Engine
    from woolguard.rules.policy import PolicyError

    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    try:
        pol = Engine().load_policy_text(text, str(path))
    except PolicyError as exc:
        err.print(f"[bold red]refused:[/] {exc}")
        raise typer.Exit(1) from None
    console.print(f"ok: {pol.ref}, {len(pol.rules)} rules "
                  f"({sum(r.shadow for r in pol.rules)} in shadow mode)")


@policy_app.command("features")
def policy_features() -> None:
    """List the features a rule may use, with their descriptions."""
    from woolguard.engine import STATIC_FEATURES
    from woolguard.features.catalog import DEFAULT_WINDOWS

    t = Table(title="features")
    t.add_column("name")
    t.add_column("kind")
    t.add_column("description")
    for w in DEFAULT_WINDOWS:
        t.add_row(w.name, f"{w.op.value} {'+'.join(w.key)} {w.window_s}s", w.description)
    for name, neutral in STATIC_FEATURES.items():
        t.add_row(name, type(neutral).__name__, "")
    console.print(t)


# -- the decision service: serve, tenants, API keys (woolguard.api) --------------------------------

tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (brands) of the decision service.")
key_app = typer.Typer(no_args_is_help=True, help="API keys: issue (printed once), list, revoke.")
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default $WOOLGUARD_DATABASE_URL, "
                                                        "else sqlite:///woolguard.db).")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (more than 1 needs --redis).")] = 1,
    db: DbOpt = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL for shared feature state "
                                                            "(default $WOOLGUARD_REDIS_URL).")] = None,
    spill_dir: Annotated[Path | None, typer.Option(help="Where decision-log rows wait while the database "
                                                        "is down (default $WOOLGUARD_SPILL_DIR, else .).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP decision service (see docs/api.md)."""
    import os
    import tempfile

    import uvicorn

    if db:
        os.environ["WOOLGUARD_DATABASE_URL"] = db
    if redis:
        os.environ["WOOLGUARD_REDIS_URL"] = redis
    if spill_dir is not None:
        os.environ["WOOLGUARD_SPILL_DIR"] = str(spill_dir)
    if workers > 1 and not os.environ.get("WOOLGUARD_REDIS_URL"):
        _fail("several workers need shared feature state: pass --redis URL (or set WOOLGUARD_REDIS_URL), "
              "or run one worker")
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="woolguard-metrics-")
    from woolguard.storage import open_database

    open_database().close()  # migrate once, before the workers start
    uvicorn.run("woolguard.api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, access_log=False, loop="uvloop", http="httptools")


@tenant_app.command("create")
def tenant_create(tenant_id: Annotated[str, typer.Argument(help="Tenant id: lowercase letters, digits, - _.")],
                  name: Annotated[str, typer.Option(help="Display name.")] = "", db: DbOpt = None) -> None:
    """Create a tenant (a brand with its own keys, policies, lists, features and decision log)."""
    from woolguard.api.keys import create_tenant
    from woolguard.storage import open_database

    with open_database(db) as database:
        try:
            create_tenant(database, tenant_id, name)
        except ValueError as exc:
            _fail(str(exc))
    console.print(f"tenant {tenant_id} created")


@tenant_app.command("list")
def tenant_list(db: DbOpt = None) -> None:
    from woolguard.api.keys import list_tenants
    from woolguard.storage import open_database

    with open_database(db) as database:
        for t in list_tenants(database):
            console.print(f"{t['id']}\t{t['name']}\t{'disabled' if t['disabled'] else 'active'}")


@key_app.command("create")
def key_create(tenant_id: Annotated[str, typer.Argument(help="The tenant the key acts for.")],
               name: Annotated[str, typer.Option(help="What the key is for.")] = "", db: DbOpt = None) -> None:
    """Issue an API key; it is printed once and stored only as a hash."""
    from woolguard.api.keys import create_key
    from woolguard.storage import open_database

    with open_database(db) as database:
        try:
            key = create_key(database, tenant_id, name)
        except LookupError as exc:
            _fail(str(exc))
    print(key)
    err.print("[dim]store it now: woolguard keeps only its hash[/]")


@key_app.command("revoke")
def key_revoke(key: Annotated[str, typer.Argument(help="The key, or its first 10 characters.")],
               db: DbOpt = None) -> None:
    """Revoke a key (every worker refuses it within the key cache time, 5 s by default)."""
    from woolguard.api.keys import revoke_key
    from woolguard.storage import open_database

    with open_database(db) as database:
        n = revoke_key(database, key)
    if n == 0:
        _fail("no active key matches")
    console.print(f"revoked {n} key(s)")


@key_app.command("list")
def key_list(tenant_id: Annotated[str | None, typer.Argument(help="Only this tenant's keys.")] = None,
             db: DbOpt = None) -> None:
    from woolguard.api.keys import list_keys
    from woolguard.storage import open_database

    with open_database(db) as database:
        for k in list_keys(database, tenant_id):
            console.print(f"{k['prefix']}…\t{k['tenant_id']}\t{k['name']}\t"
                          f"{'revoked' if k['revoked_at'] else 'active'}")



# -- gangs: detect over the decision log, read the gang table, list a gang's members ---------------

gangs_app = typer.Typer(no_args_is_help=True, help="Gangs found in the decision log: run, list, show, list members.")
app.add_typer(gangs_app, name="gangs")
TenantOpt = Annotated[str, typer.Option("--tenant", help="Tenant.")]
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _epoch_ms(value: str | None, name: str) -> int | None:
    """Epoch ms, or an ISO time (UTC when it names no zone)."""
    from datetime import UTC, datetime

    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{name} must be epoch milliseconds or an ISO time, got {value!r}")
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)


def _ttl_ms(value: str | None) -> int | None:
    """``3600`` (seconds), ``30m``, ``12h``, ``7d``, ``2w``."""
    if value is None:
        return None
    unit = value[-1:].lower()
    number = value[:-1] if unit in _TTL_UNITS else value
    if not number.isdigit() or int(number) <= 0:
        _fail(f"--ttl takes seconds or a duration such as 30m, 12h, 7d; got {value!r}")
    return int(number) * _TTL_UNITS.get(unit, 1) * 1000


def _when(ms: int | None) -> str:
    from datetime import UTC, datetime

    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


def _jsonable(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


def _gang_table(rows: list[dict[str, Any]], title: str) -> Table:
    t = Table(title=title)
    for col in ("id", "detector", "size", "score", "first (UTC)", "last (UTC)", "money ¥"):
        t.add_column(col, justify="left" if col == "detector" else "right", no_wrap=True)
    t.add_column("strongest shared attributes", no_wrap=True, overflow="ellipsis", max_width=44)
    for g in rows:
        shared = ", ".join(f"{a['attribute']} ×{a['members']}" for a in g["shared_attributes"][:2])
        t.add_row(str(g["id"]), g["detector"], f"{g['size']:,}", f"{g['score']:.2f}", _when(g["first_ts"])[5:],
                  _when(g["last_ts"])[5:], f"{g['money']:,.2f}", shared)
    return t


def _run_line(run: dict[str, Any]) -> str:
    window = f"{_when(run['since_ms'])} → {_when(run['until_ms'])}"
    return (f"run {run['id']} ({run['source'] or '-'}, {run['created_at']}): {run['events']:,} events, "
            f"{run['accounts']:,} accounts, window {window}: {run['gangs']} gangs, {run['members']:,} accounts "
            f"in gangs, {run['seconds']:.1f} s")


@gangs_app.command("run")
def gangs_run(
    db: DbOpt = None,
    tenant: TenantOpt = "default",
    since: Annotated[str | None, typer.Option(help="Decisions from (epoch ms or ISO time).")] = None,
    until: Annotated[str | None, typer.Option(help="Decisions before (epoch ms or ISO time).")] = None,
    limit: Annotated[int, typer.Option(help="Gangs to print.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Detect gangs in the decision log and save the run (it becomes the one the service's engines use)."""
    from woolguard.storage import open_database
    from woolguard.storage.gangs import latest_gangs, run_gangs

    since_ms, until_ms = _epoch_ms(since, "--since"), _epoch_ms(until, "--until")
    with open_database(db) as database:
        run = run_gangs(database, tenant, since_ms=since_ms, until_ms=until_ms, source="cli")
        rows = latest_gangs(database, tenant, run_id=run["id"])
    if as_json:
        print(_jsonable({"run": run, "gangs": rows}))
        return
    console.print(_run_line(run))
    if rows:
        console.print(_gang_table(rows[:limit], f"gangs of run {run['id']} (strongest first)"))
        console.print("details: woolguard gangs show ID; list them: woolguard gangs list-members ID --to review")


@gangs_app.command("list")
def gangs_list(
    db: DbOpt = None,
    tenant: TenantOpt = "default",
    run: Annotated[int | None, typer.Option("--run", help="An older run id (default: the newest).")] = None,
    limit: Annotated[int, typer.Option(help="Gangs to print.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """The gangs of the newest run (the one in force), strongest first."""
    from woolguard.storage import open_database
    from woolguard.storage.gangs import get_run, latest_gangs, latest_run

    with open_database(db) as database:
        r = latest_run(database, tenant) if run is None else get_run(database, tenant, run)
        rows = latest_gangs(database, tenant, run_id=r["id"], limit=limit) if r is not None else []
    if r is None:
        _fail(f"no gang run {run}" if run is not None else "no gang run yet: woolguard gangs run", 1)
    if as_json:
        print(_jsonable({"run": r, "gangs": rows}))
        return
    console.print(_run_line(r))
    console.print(_gang_table(rows, f"gangs of run {r['id']}"))


@gangs_app.command("show")
def gangs_show(
    gang_id: Annotated[int, typer.Argument(help="Gang id (from woolguard gangs list).")],
    db: DbOpt = None,
    tenant: TenantOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """A gang's evidence: members, shared attributes, timeline, money."""
    from woolguard.storage import open_database
    from woolguard.storage.gangs import get_gang

    with open_database(db) as database:
        g = get_gang(database, tenant, gang_id)
    if g is None:
        _fail(f"no gang {gang_id} (tenant {tenant})", 1)
    if as_json:
        print(_jsonable(g))
        return
    console.print(f"[bold]gang {g['id']}[/] (run {g['run_id']}, {g['detector']}): {g['size']} accounts, score "
                  f"{g['score']:.2f}, {_when(g['first_ts'])} → {_when(g['last_ts'])} UTC, money ¥{g['money']:,.2f}")
    shared = Table(title="shared attributes")
    shared.add_column("attribute")
    shared.add_column("members", justify="right")
    for a in g["shared_attributes"]:
        shared.add_row(a["attribute"], str(a["members"]))
    console.print(shared)
    members = Table(title=f"members ({len(g['members'])})")
    for col in ("account", "gang_score", "gang_size"):
        members.add_column(col, justify="left" if col == "account" else "right")
    for m in g["members"]:
        members.add_row(m["account_id"], str(m["gang_score"]), str(m["gang_size"]))
    console.print(members)
    timeline = Table(title="timeline (UTC)")
    for col in ("when", "account", "attribute"):
        timeline.add_column(col)
    for e in g["timeline"]:
        from datetime import UTC, datetime

        timeline.add_row(datetime.fromtimestamp(e["ts"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"), e["account"],
                         e["attribute"])
    console.print(timeline)


@gangs_app.command("list-members")
def gangs_list_members(
    gang_id: Annotated[int, typer.Argument(help="Gang id.")],
    to: Annotated[str, typer.Option("--to", help="review or block.")],
    ttl: Annotated[str | None, typer.Option(help="Expire after: seconds, or 30m, 12h, 7d, 2w (default: never).")]
    = None,
    reason: Annotated[str | None, typer.Option(help="Reason (default 'gang ID').")] = None,
    campaign: Annotated[str | None, typer.Option(help="Only this campaign (default: every campaign).")] = None,
    db: DbOpt = None,
    tenant: TenantOpt = "default",
) -> None:
    """Put every member account of a gang on the review or block list."""
    from woolguard.storage import open_database
    from woolguard.storage.gangs import list_gang_members

    if to not in ("review", "block"):
        _fail("--to must be review or block")
    ttl_ms = _ttl_ms(ttl)
    with open_database(db) as database:
        ids = list_gang_members(database, tenant, gang_id, to, ttl_ms=ttl_ms, reason=reason, campaign_id=campaign,
                                created_by="cli")
    if ids is None:
        _fail(f"no gang {gang_id} (tenant {tenant})", 1)
    until = f" for {ttl}" if ttl else ""
    console.print(f"{len(ids)} account(s) of gang {gang_id} on the {to} list{until} "
                  f"(reason {reason or f'gang {gang_id}'!r})")


# ---------------------------------------------------------------------------------------------------
# campaign: rules and versions, code batches, the savings report, attack pressure (woolguard.campaigns)

campaign_app = typer.Typer(no_args_is_help=True, help="Campaigns: rules, versions, codes, savings, pressure.")
campaign_codes_app = typer.Typer(no_args_is_help=True, help="One-item-one-code batches: generate, export.")
app.add_typer(campaign_app, name="campaign")
campaign_app.add_typer(campaign_codes_app, name="codes")
CampaignDb = Annotated[str | None, typer.Option("--db", help="Database URL (default $WOOLGUARD_DATABASE_URL, "
                                                            "else sqlite:///woolguard.db).")]
CampaignTenant = Annotated[str, typer.Option("--tenant", help="Tenant id.")]


def _campaign_call(db: str | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    from woolguard.campaigns import CampaignError, RulesError
    from woolguard.storage import open_database

    database = open_database(db)
    try:
        with database.connect() as conn:
            return fn(conn, *args, **kwargs)
    except (CampaignError, RulesError, ValueError) as exc:
        _fail(str(exc))
    finally:
        database.close()


def _rules_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    except yaml.YAMLError as exc:
        _fail(f"{path}: not YAML/JSON: {exc}")
    if not isinstance(doc, dict):
        _fail(f"{path}: the rules are a mapping")
    return doc


@campaign_app.command("create")
def campaign_create(campaign_id: Annotated[str, typer.Argument(help="Campaign id (events' campaign_id).")],
                    rules: Annotated[Path, typer.Argument(help="Rules file (YAML or JSON): docs/campaigns.md.")],
                    tenant: CampaignTenant = "default", note: str = "", db: CampaignDb = None) -> None:
    """Create a campaign (version 1)."""
    from woolguard.campaigns import service

    _campaign_call(db, service.create_campaign, tenant, campaign_id, _rules_file(rules), note)
    console.print(f"created campaign [bold]{campaign_id}[/] (version 1) for tenant {tenant}")


@campaign_app.command("version")
def campaign_version(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
                     rules: Annotated[Path, typer.Argument(help="The new rules file.")],
                     tenant: CampaignTenant = "default", note: str = "", db: CampaignDb = None) -> None:
    """Change a campaign's rules: saves a new version and makes it current."""
    from woolguard.campaigns import service

    camp = _campaign_call(db, service.new_version, tenant, campaign_id, _rules_file(rules), note)
    console.print(f"campaign [bold]{campaign_id}[/] is now at version {camp.version}")


@campaign_app.command("list")
def campaign_list(tenant: CampaignTenant = "default", db: CampaignDb = None) -> None:
    """The tenant's campaigns with budget and spending."""
    from woolguard.campaigns import service

    table = Table("id", "kind", "version", "budget (yuan)", "committed (yuan)", "paused", title="campaigns")
    for r in _campaign_call(db, service.list_campaigns, tenant):
        table.add_row(r["id"], r["kind"], str(r["version"]), f"{r['budget_fen'] / 100:,.2f}",
                      f"{r['spent_fen'] / 100:,.2f}", "yes" if r["paused"] else "")
    console.print(table)


@campaign_codes_app.command("generate")
def campaign_codes_generate(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
                            count: Annotated[int, typer.Option("--count", help="Codes in the batch.")],
                            product: str = "", line: Annotated[str, typer.Option(help="Production line.")] = "",
                            tenant: CampaignTenant = "default", db: CampaignDb = None) -> None:
    """Register a batch of codes (nothing per code is stored; export prints them)."""
    from woolguard.campaigns import service

    batch = _campaign_call(db, service.create_batch, tenant, campaign_id, count, product, line)
    console.print(f"batch [bold]{batch}[/]: {count:,} codes for {campaign_id}; "
                  f"export with: woolguard campaign codes export {batch} --csv codes.csv")


@campaign_codes_app.command("export")
def campaign_codes_export(batch_id: Annotated[int, typer.Argument(help="Batch id.")],
                          csv_path: Annotated[Path | None, typer.Option("--csv", help="Write a CSV here.")] = None,
                          qr_dir: Annotated[Path | None, typer.Option("--qr", help="Write QR PNGs here.")] = None,
                          url_template: Annotated[str | None, typer.Option(
                              help="QR/URL content, with {code}: https://x.cn/s/{code}")] = None,
                          first: int = 0, limit: int | None = None,
                          tenant: CampaignTenant = "default", db: CampaignDb = None) -> None:
    """Write a batch's codes for printing: CSV and/or one QR image per code."""
    from woolguard.campaigns import service
    from woolguard.campaigns.codes import CodeSigner, write_csv, write_qr
    from woolguard.engine import secret_from_env

    if csv_path is None and qr_dir is None:
        _fail("say where: --csv PATH and/or --qr DIR")
    batch = _campaign_call(db, service.get_batch, tenant, batch_id)
    if batch is None:
        _fail(f"no batch {batch_id} for tenant {tenant}")
    n = max(0, min(batch["count"] - first, limit if limit is not None else batch["count"]))
    signer = CodeSigner.for_tenant(secret_from_env(), tenant)
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            write_csv(f, signer.batch(batch_id, n, first), batch_id, batch["product"], batch["line"], url_template)
        console.print(f"wrote {n:,} codes to {csv_path}")
    if qr_dir is not None:
        write_qr(qr_dir, signer.batch(batch_id, n, first), batch_id, url_template)
        console.print(f"wrote {n:,} QR images to {qr_dir}")


@campaign_app.command("report")
def campaign_report(campaign_id: Annotated[str | None, typer.Argument(help="Campaign id (default: all).")] = None,
                    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write the rows as CSV.")] = None,
                    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
                    tenant: CampaignTenant = "default", db: CampaignDb = None) -> None:
    """Savings per campaign and day, from the ledger: paid (genuine / fraud / gang), refused, genuine refusals."""
    from woolguard.campaigns.report import savings, totals, write_savings_csv

    rows = _campaign_call(db, savings, tenant, campaign_id)
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as f:
            write_savings_csv(f, rows)
    if json_out:
        print(json.dumps({"days": rows, "totals": totals(rows)}, indent=2))
        return
    shown = ("campaign_id", "day", "paid_fen", "paid_genuine_fen", "paid_fraud_fen", "paid_gang_fen", "refused_fen",
             "refused_genuine_est_fen", "saved_net_fen", "held_fen")
    table = Table(*[f.removesuffix("_fen").replace("_", " ") for f in shown],
                  title="savings (fen; --csv or --json for every column)")
    for r in [*rows, {"campaign_id": "total", "day": "", **totals(rows)}]:
        table.add_row(*["-" if r[f] is None else f"{r[f]:,}" if isinstance(r[f], int) and f != "day" else str(r[f])
                        for f in shown])
    console.print(table)


@campaign_app.command("pressure")
def campaign_pressure(tenant: Annotated[str | None, typer.Option("--tenant", help="One tenant (default: all).")]
                      = None, top: int = 20, db: CampaignDb = None) -> None:
    """Campaigns and tenants ranked by attack pressure (for the operator of a many-brand deployment)."""
    from woolguard.campaigns.report import pressure

    out = _campaign_call(db, pressure, tenant)
    table = Table("rank", "tenant", "campaign", "events", "rejected %", "gang %", "targeted (yuan)", "paid (yuan)",
                  "trend", title="attack pressure")
    for r in out["campaigns"][:top]:
        table.add_row(str(r["rank"]), r["tenant_id"], r["campaign_id"], f"{r['events']:,}",
                      f"{100 * r['rejected_share']:.1f}", f"{100 * r['gang_share']:.1f}",
                      f"{r['money_targeted_fen'] / 100:,.2f}", f"{r['money_paid_fen'] / 100:,.2f}",
                      "-" if r["trend"] is None else f"{r['trend']:.2f}")
    console.print(table)


@campaign_app.command("expire")
def campaign_expire(tenant: CampaignTenant = "default", db: CampaignDb = None) -> None:
    """Release the budget of coupons that expired unredeemed (a ``released`` ledger row each); run it from cron."""
    from woolguard.campaigns import service

    n = _campaign_call(db, service.expire_coupons, tenant)
    console.print(f"released {n} expired coupon(s) for tenant {tenant}")


@campaign_app.command("audit")
def campaign_audit(tenant: Annotated[str | None, typer.Option("--tenant", help="One tenant (default: all).")]
                   = None, db: CampaignDb = None) -> None:
    """Re-read the ledger: overspent budgets / counts / caps / limits and double payments (exit 1 if any)."""
    from woolguard.campaigns.ledger import audit

    found = _campaign_call(db, audit, tenant)
    print(json.dumps(found, indent=2))
    if found["overspent"] or found["paid_twice"]:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------
# The learned model: import, train, backtest, registry (woolguard.model, woolguard.rules.backtest)

model_app = typer.Typer(no_args_is_help=True, help="The model registry: list, show, activate, roll back, shadow.")
app.add_typer(model_app, name="model")
ModelsOpt = Annotated[Path | None, typer.Option("--models", help="Model registry directory "
                                                "(default $WOOLGUARD_MODELS_DIR or ./models).")]


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="A CSV or Parquet event log.")],
    out: Annotated[Path, typer.Option("--out", help="Directory to write events.parquet and import.json to.")],
    mapping_file: Annotated[Path | None, typer.Option("--mapping", help="Column mapping as JSON or YAML "
                                                      "(keys as the options below; options override it).")] = None,
    time_col: Annotated[str | None, typer.Option("--time", help="Time column.")] = None,
    time_format: Annotated[str | None, typer.Option("--time-format", help="iso, s, ms or order.")] = None,
    account: Annotated[str | None, typer.Option(help="Account column.")] = None,
    device: Annotated[str | None, typer.Option(help="Device column.")] = None,
    ip: Annotated[str | None, typer.Option(help="IP column.")] = None,
    amount: Annotated[str | None, typer.Option(help="Amount column.")] = None,
    label: Annotated[str | None, typer.Option(help="Label column.")] = None,
    positive: Annotated[list[str] | None, typer.Option(help="Label value meaning fraud (repeatable).")] = None,
    negative: Annotated[list[str] | None, typer.Option(help="Label value meaning genuine (repeatable; others "
                                                       "are then unlabelled; default: every non-positive).")] = None,
    entity: Annotated[list[str] | None, typer.Option(help="Extra entity column with its own windows.")] = None,
    category: Annotated[list[str] | None, typer.Option(help="Column used as a categorical model input.")] = None,
    event_id: Annotated[str | None, typer.Option("--event-id", help="Event id column.")] = None,
    span: Annotated[list[int] | None, typer.Option(help="Window span in seconds (order: in units), repeatable.")]
    = None,
    label_delay: Annotated[int | None, typer.Option(help="How late labels arrive, in seconds (order: units); "
                                                    "default: the third span.")] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="skip (report and skip bad rows) or refuse.")] = "skip",
) -> None:
    """Import a CSV or Parquet event log with a column mapping; bad rows are reported by line number."""
    import yaml

    from woolguard.model.importer import ImportError_, Mapping, import_log

    doc: dict[str, Any] = {}
    if mapping_file is not None:
        try:
            doc = yaml.safe_load(mapping_file.read_text("utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            _fail(f"cannot read mapping {mapping_file}: {exc}")
    opts = {"time": time_col, "time_format": time_format, "account": account, "device": device, "ip": ip,
            "amount": amount, "label": label, "positive": positive, "negative": negative, "entities": entity,
            "categories": category, "event_id": event_id, "spans": span,
            "label_delay": label_delay}
    doc.update({k: v for k, v in opts.items() if v is not None})
    if not doc.get("time") or not doc.get("account"):
        _fail("the mapping needs at least --time and --account")
    try:
        summary = import_log(path, Mapping.from_dict(doc), out, on_error=on_error)
    except ImportError_ as exc:
        for b in exc.bad[:20]:
            err.print(f"  line {b['line']}: {b['column']}={b['value']!r}: {b['problem']}")
        _fail(str(exc))
    except TypeError as exc:
        _fail(f"mapping: {exc}")
    for b in summary["bad_shown"][:20]:
        err.print(f"[yellow]skipped[/] line {b['line']}: {b['column']}={b['value']!r}: {b['problem']}")
    console.print(f"imported {summary['imported']:,} of {summary['rows']:,} rows ({summary['bad_rows']:,} bad, "
                  f"skipped{', listed in bad_rows.csv' if summary['bad_rows'] else ''}); {summary['labelled']:,} "
                  f"labelled, {summary['positives']:,} positive; {len(summary['windows'])} windows → {out}")


def _print_train(out: dict[str, Any], name: str, version: int | None, models: Path) -> None:
    r = out["result"]
    t = Table(title=f"model {name} v{version}" if version else "model (not saved)")
    for col in ("slice", "rows", "positives", "AUROC", "AUPRC", "recall@FPR 0.1%", "recall@FPR 1%"):
        t.add_column(col, justify="left" if col == "slice" else "right")
    for s in ("valid", "test"):
        m = r.metrics[s]
        t.add_row(s, f"{m['rows']:,}", f"{m['positives']:,}", f"{m['auroc']:.4f}", f"{m['auprc']:.4f}",
                  f"{m['recall_at_fpr']['0.001']:.3f}", f"{m['recall_at_fpr']['0.01']:.3f}")
    console.print(t)
    console.print(f"split {r.split['mode']}; {r.rounds} trees; score PSI train→test {r.drift['score_psi']}"
                  f"{' [red]DRIFT[/]' if r.drift['alerts'] else ''}; top features: "
                  + ", ".join(d["feature"] for d in r.importance[:5]))
    for k in ("rules_only_test", "rules_and_model_test"):
        if k in out:
            f = out[k]
            console.print(f"{k}: gang claims caught {f['caught_pct']:.2f}%, genuine rejected "
                          f"{f['genuine_rejected_pct']:.3f}%, challenged {f['genuine_challenged_pct']:.2f}%")
    if version:
        console.print(f"saved {models / name / f'v{version:04d}'} (report.json, report.html)")


@app.command()
def train(
    data: Annotated[Path | None, typer.Option("--data", help="An import directory (woolguard import --out).")]
    = None,
    events: Annotated[Path | None, typer.Option("--events", help="A JSON-lines event file labelled in truth.")]
    = None,
    sim: Annotated[bool, typer.Option("--sim", help="Train on a simulated campaign.")] = False,
    seed: Annotated[int, typer.Option(help="Simulation seed.")] = 7,
    scale: Annotated[float, typer.Option(help="Simulation scale.")] = 1.0,
    days: Annotated[int, typer.Option(help="Simulated days.")] = 3,
    test_days: Annotated[int, typer.Option(help="Simulation: the last N days are the test period.")] = 1,
    split: Annotated[str, typer.Option(help="time (default) or random (stratified; only to compare with "
                                       "published results).")] = "time",
    test_frac: Annotated[float | None, typer.Option(help="Test share (time: 0.3, random: 0.4).")] = None,
    screen_psi: Annotated[float | None, typer.Option(help="Leave out features whose PSI train→validation "
                                                     "exceeds this.")] = None,
    feedback: Annotated[str, typer.Option(help="Label feedback of an import: strict (the test period reads only "
                                          "labels of earlier periods), delayed (also its own, once older than the "
                                          "label delay; time split only) or off.")] = "strict",
    label_delay: Annotated[int | None, typer.Option(help="Label delay for the feedback, in seconds (order: units); "
                                                    "default: the import's label_delay or its third span.")] = None,
    name: Annotated[str | None, typer.Option(help="Model name in the registry.")] = None,
    models: ModelsOpt = None,
    activate: Annotated[bool, typer.Option("--activate", help="Activate the new version.")] = False,
    threads: Annotated[int, typer.Option(help="LightGBM threads.")] = 2,
    json_path: JsonOpt = None,
    html_path: HtmlOpt = None,
) -> None:
    """Train a LightGBM model on replayed features, test it on a later period, store it in the registry."""
    from woolguard.model import pipeline
    from woolguard.model.importer import ImportError_
    from woolguard.model.registry import Registry
    from woolguard.model.report import render_html

    if sum([data is not None, events is not None, sim]) != 1:
        _fail("give exactly one of --data, --events, --sim")
    reg = Registry(models)
    if sim:
        from woolguard.sim import SimConfig

        name = name or "sim"
        out = pipeline.train_sim(SimConfig(seed=seed, scale=scale, days=days), test_days=test_days, registry=reg,
                                 name=name, threads=threads)
    elif events is not None:
        name = name or "events"
        out = pipeline.train_events(events, test_frac=test_frac or 0.3, registry=reg, name=name, threads=threads)
    else:
        name = name or "import"
        try:
            out = pipeline.train_import(data, split=split, test_frac=test_frac, registry=reg, name=name,
                                        threads=threads, screen_psi=screen_psi, feedback=feedback,
                                        label_delay_ms=None if label_delay is None else label_delay * 1000)
        except (ImportError_, ValueError) as exc:
            _fail(str(exc))
    version = out.get("version")
    if activate and version:
        reg.activate(name, version)
    _print_train(out, name, version, reg.root)
    meta = out.get("meta", {})
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(meta, indent=2, ensure_ascii=False, default=str), "utf-8")
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(meta, f"woolguard model {name} v{version}"), "utf-8")


@app.command()
def backtest(
    candidate_policy: Annotated[Path | None, typer.Option("--candidate-policy", help="Candidate policy file.")]
    = None,
    candidate_model: Annotated[str | None, typer.Option("--candidate-model", help="NAME@VERSION in the registry: "
                                                        "its scores replace the stored model_score.")] = None,
    policy: PolicyOpt = None,
    features: Annotated[Path | None, typer.Option("--features", help="Feature rows (Parquet: one column per "
                                                  "feature, kind, label, value).")] = None,
    db: DbOpt = None,
    since: Annotated[str | None, typer.Option(help="Decision log from (epoch ms or ISO time).")] = None,
    until: Annotated[str | None, typer.Option(help="Decision log before (epoch ms or ISO time).")] = None,
    tenant: TenantOpt = "default",
    models: ModelsOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Replay stored feature rows through a candidate policy and/or model; report what changes against the active."""
    import polars as pl

    from woolguard.engine import Engine
    from woolguard.rules import backtest as bt
    from woolguard.rules.policy import PolicyError

    engine = Engine()
    try:
        active = engine.load_policy_text(policy.read_text("utf-8"), str(policy)) if policy else engine.policy
        cand = (engine.load_policy_text(candidate_policy.read_text("utf-8"), str(candidate_policy))
                if candidate_policy else active)
    except (PolicyError, OSError) as exc:
        _fail(f"policy: {exc}")
    if features is not None:
        df = pl.read_parquet(features)
    else:
        from woolguard.storage import open_database

        with open_database(db) as database:
            df = bt.frame_from_decision_log(database, tenant, _epoch_ms(since, "since"), _epoch_ms(until, "until"))
    if df.height == 0:
        _fail("no rows to backtest")
    cms = cas = None
    if candidate_model:
        import numpy as np

        from woolguard.model.registry import Registry

        mname, _, ver = candidate_model.partition("@")
        scorer = Registry(models).scorer(mname, int(ver.lstrip("v")))
        cols = {n: df[n].to_list() for n in scorer.spec.names if n in df.columns}
        xm = scorer.spec.matrix(cols)
        cms = np.rint(scorer.probabilities(xm) * 100).astype(np.int64)
        cas = np.rint(scorer.actor_probabilities(xm) * 100).astype(np.int64)
    out = bt.backtest(df, active, cand, candidate_model_score=cms, candidate_actor_score=cas)
    t = Table(title=f"backtest of {out['events']:,} events ({out['payout_events']:,} payouts) in {out['seconds']} s")
    for col in ("", "gang rejected %", "gang stopped or challenged %", "genuine rejected %", "genuine friction %",
                "money saved ¥"):
        t.add_column(col, justify="right" if col else "left")
    for side in ("active", "candidate"):
        s = out[side]
        t.add_row(f"{side} {s['policy']}", f"{s['gang_rejected_pct']:.2f}",
                  f"{s['gang_stopped_or_challenged_pct']:.2f}",
                  f"{s['genuine_rejected_pct']:.3f}", f"{s['genuine_friction_pct']:.3f}", f"{s['money_saved']:,.2f}")
    console.print(t)
    console.print("changed outcomes: " + (", ".join(f"{k} {v:,}" for k, v in out["changed_outcomes"].items())
                                          or "none"))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(out, indent=2, ensure_ascii=False), "utf-8")
        console.print(f"wrote {json_path}")


@model_app.command("list")
def model_list(models: ModelsOpt = None) -> None:
    """Every model and version, with its test metrics and which one is active or shadow."""
    from woolguard.model.registry import Registry

    reg = Registry(models)
    t = Table(title=f"models in {reg.root}")
    for col in ("name", "version", "state", "split", "test AUROC", "test AUPRC", "trained on"):
        t.add_column(col)
    for name in reg.names():
        st = reg.state(name)
        for v in reg.versions(name):
            m = reg.meta(name, v)
            state = "active" if st.get("active") == v else "shadow" if st.get("shadow") == v else ""
            test = m.get("metrics", {}).get("test", {})
            t.add_row(name, str(v), state, m.get("split", {}).get("mode", ""), str(test.get("auroc")),
                      str(test.get("auprc")), str(m.get("source", {}).get("kind", "")))
    console.print(t)


@model_app.command("show")
def model_show(name: Annotated[str, typer.Argument(help="Model name.")],
               version: Annotated[int | None, typer.Argument(help="Version (default: the active one).")] = None,
               models: ModelsOpt = None) -> None:
    """A version's metadata (training window, features, metrics, thresholds, drift) as JSON."""
    from woolguard.model.registry import Registry, RegistryError

    reg = Registry(models)
    v = version or reg.state(name).get("active")
    if not v:
        _fail(f"{name}: no active version; name one")
    try:
        meta = reg.meta(name, v)
    except RegistryError as exc:
        _fail(str(exc))
    meta.pop("reference", None)
    meta.pop("curves", None)
    print(json.dumps(meta, indent=2, ensure_ascii=False))


@model_app.command("activate")
def model_activate(name: Annotated[str, typer.Argument(help="Model name.")],
                   version: Annotated[int, typer.Argument(help="Version to activate.")],
                   models: ModelsOpt = None) -> None:
    """Make a version the one the engine acts on."""
    from woolguard.model.registry import Registry, RegistryError

    try:
        st = Registry(models).activate(name, version)
    except RegistryError as exc:
        _fail(str(exc))
    console.print(f"{name}: active v{st['active']}" + (f", shadow v{st['shadow']}" if st.get("shadow") else ""))


@model_app.command("rollback")
def model_rollback(name: Annotated[str, typer.Argument(help="Model name.")], models: ModelsOpt = None) -> None:
    """Re-activate the version that was active before the current one."""
    from woolguard.model.registry import Registry, RegistryError

    try:
        st = Registry(models).rollback(name)
    except RegistryError as exc:
        _fail(str(exc))
    console.print(f"{name}: rolled back to v{st['active']}")


@model_app.command("shadow")
def model_shadow(name: Annotated[str, typer.Argument(help="Model name.")],
                 version: Annotated[int | None, typer.Argument(help="Version to shadow (omit with --off).")] = None,
                 off: Annotated[bool, typer.Option("--off", help="Stop shadowing.")] = False,
                 models: ModelsOpt = None) -> None:
    """Score a version beside the active one, logged as model_shadow_score and never acted on."""
    from woolguard.model.registry import Registry, RegistryError

    if (version is None) != off:
        _fail("give a version, or --off")
    try:
        st = Registry(models).shadow(name, None if off else version)
    except RegistryError as exc:
        _fail(str(exc))
    console.print(f"{name}: shadow {'off' if st['shadow'] is None else 'v' + str(st['shadow'])}")


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
