"""Campaigns over HTTP: rules and versions, code batches and their export, scans, coupon claims, redemptions
and refunds, challenge results, review verdicts, the savings report, the ledger and attack pressure.

Thin: each route calls one function of :mod:`woolguard.campaigns.service` / ``report`` with the caller's
tenant. Scans and claims are decided by the tenant's engine first (as ``POST /v1/events`` would, and
logged the same way); the decision gates the payout. See docs/campaigns.md.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from woolguard.campaigns import codes as codes_mod
from woolguard.campaigns import ledger as ledger_mod
from woolguard.campaigns import report as report_mod
from woolguard.campaigns import service as svc
from woolguard.campaigns.models import RulesError
from woolguard.engine import CampaignInfo, secret_from_env
from woolguard.events import Decision, Event, EventError, EventKind, decode_event

from ..auth import tenant_of
from ..errors import event_error_response, responses, unprocessable
from ..service import DecisionService, Pending

router = APIRouter(tags=["campaigns"])
T = TypeVar("T")
_signers: dict[str, codes_mod.CodeSigner] = {}
#: The tenant whose keys see every tenant's attack pressure (the deployment's operator).
OPERATOR_ENV = "WOOLGUARD_OPERATOR_TENANT"
ERRS = responses(401, 404, 409, 422, 503)


def signer(tenant: str) -> codes_mod.CodeSigner:
    s = _signers.get(tenant)
    if s is None:
        s = _signers[tenant] = codes_mod.CodeSigner.for_tenant(secret_from_env(), tenant)
    return s


def _call(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(conn, *args)`` on a connection of the service's database; domain errors become 4xx."""
    service: DecisionService = request.app.state.service
    try:
        with service.db.connect() as conn:
            return fn(conn, *args, **kwargs)
    except RulesError as exc:
        from ..errors import path_to_loc

        raise HTTPException(422, detail=[{"loc": path_to_loc(exc.field, "body"), "msg": exc.message,
                                          "type": "value_error"}]) from None
    except svc.CampaignError as exc:
        raise HTTPException(409 if "already" in str(exc) else 404, detail=str(exc)) from None
    except IntegrityError as exc:
        raise HTTPException(409, detail="conflicting concurrent change; retry") from exc
    except (ValueError, HTTPException):
        raise
    except Exception as exc:
        raise HTTPException(503, detail="the database is unreachable; retry later",
                            headers={"Retry-After": "1"}) from exc


# ---------------------------------------------------------------------------------------------------
# Campaigns and versions


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$", description="Campaign id (the events' campaign_id)")
    rules: dict[str, Any] = Field(description="The rules document: see docs/campaigns.md")
    note: str = Field("", max_length=500)


class VersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: dict[str, Any]
    note: str = Field("", max_length=500)


class PausedIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool


def _reload_policies(request: Request, tenant: str) -> None:
    """A campaign's own policy applies in this worker at once (other workers: at their next poll)."""
    try:
        request.app.state.service.reload_tenant(tenant)
    except Exception:  # the poller will pick it up
        pass


def _state(request: Request, tenant: str, cid: str) -> dict[str, Any]:
    return _call(request, svc.campaign_state, tenant, cid)


@router.post("/v1/campaigns", status_code=201, responses=ERRS, summary="Create a campaign (version 1)")
def create_campaign(body: CampaignIn, request: Request, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    _call(request, svc.create_campaign, tenant, body.id, body.rules, body.note)
    _reload_policies(request, tenant)
    return _state(request, tenant, body.id)


@router.get("/v1/campaigns", responses=ERRS, summary="The tenant's campaigns")
def list_campaigns(request: Request, tenant: str = Depends(tenant_of)) -> list[dict[str, Any]]:
    rows = _call(request, svc.list_campaigns, tenant)
    return [{k: r[k] for k in ("id", "kind", "name", "version", "start_ms", "end_ms", "budget_fen", "spent_fen",
                               "paused")} for r in rows]


@router.get("/v1/campaigns/{campaign_id}", responses=ERRS, summary="A campaign: current rules, tiers, versions")
def get_campaign(campaign_id: str, request: Request, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    return _state(request, tenant, campaign_id)


@router.post("/v1/campaigns/{campaign_id}/versions", status_code=201, responses=ERRS,
             summary="Change a campaign's rules: a new version becomes current")
def post_version(campaign_id: str, body: VersionIn, request: Request,
                 tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    _call(request, svc.new_version, tenant, campaign_id, body.rules, body.note)
    _reload_policies(request, tenant)
    return _state(request, tenant, campaign_id)


@router.post("/v1/campaigns/{campaign_id}/paused", responses=ERRS, summary="Pause or resume a campaign")
def post_paused(campaign_id: str, body: PausedIn, request: Request,
                tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    _call(request, svc.set_paused, tenant, campaign_id, body.paused)
    return _state(request, tenant, campaign_id)


# ---------------------------------------------------------------------------------------------------
# Code batches


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, le=codes_mod.MAX_SERIAL + 1)
    product: str = Field("", max_length=128)
    line: str = Field("", max_length=128, description="Production line")


@router.post("/v1/campaigns/{campaign_id}/batches", status_code=201, responses=ERRS,
             summary="Register a batch of one-item-one-code codes (export them with .../codes.csv)")
def post_batch(campaign_id: str, body: BatchIn, request: Request, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    batch_id = _call(request, svc.create_batch, tenant, campaign_id, body.count, body.product, body.line)
    return {"batch_id": batch_id, "campaign_id": campaign_id, "count": body.count, "product": body.product,
            "line": body.line}


@router.get("/v1/campaigns/{campaign_id}/batches", responses=ERRS, summary="The campaign's code batches")
def get_batches(campaign_id: str, request: Request, tenant: str = Depends(tenant_of)) -> list[dict[str, Any]]:
    rows = _call(request, svc.list_batches, tenant, campaign_id)
    return [{k: r[k] for k in ("batch_id", "campaign_id", "product", "line", "count")} for r in rows]


@router.get("/v1/campaigns/{campaign_id}/batches/{batch_id}/codes.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}}}, **ERRS}, summary="A batch's codes for printing (CSV)")
def get_codes(campaign_id: str, batch_id: int, request: Request, tenant: str = Depends(tenant_of),
              url_template: str | None = Query(None, max_length=500, description="e.g. https://x.cn/s/{code}"),
              first: int = Query(0, ge=0), limit: int | None = Query(None, ge=1)) -> StreamingResponse:
    batch = _call(request, lambda conn: svc.get_batch(conn, tenant, batch_id))
    if batch is None or batch["campaign_id"] != campaign_id:
        raise HTTPException(404, detail=f"no batch {batch_id} in campaign {campaign_id!r}")
    if url_template is not None and "{code}" not in url_template:
        raise unprocessable(["query", "url_template"], "url_template must contain {code}")
    n = max(0, min(batch["count"] - first, limit if limit is not None else batch["count"]))
    s = signer(tenant)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        it = s.batch(batch_id, n, first)
        codes_mod.write_csv(buf, [], batch_id)  # the header
        yield buf.getvalue()
        while True:
            chunk = [next(it, None) for _ in range(1000)]
            chunk = [c for c in chunk if c is not None]
            if not chunk:
                return
            buf = io.StringIO()
            codes_mod.write_csv(buf, chunk, batch_id, batch["product"], batch["line"], url_template)
            yield buf.getvalue().split("\r\n", 1)[1]

    return StreamingResponse(rows(), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"'})


# ---------------------------------------------------------------------------------------------------
# Scans and claims: decide, then gate the payout


def _decide(request: Request, tenant: str, event: Event) -> Decision:
    service: DecisionService = request.app.state.service
    if event.campaign_id:
        rt = service.runtime(tenant)
        if event.campaign_id not in rt.engine.campaigns:
            try:
                camp = _call(request, svc.get_campaign, tenant, event.campaign_id)
                rt.engine.campaigns[event.campaign_id] = CampaignInfo(event.campaign_id, camp.rules.start_ms,
                                                                      camp.rules.end_ms)
            except HTTPException:
                pass
    d = service.decide(tenant, event)
    deadline = time.monotonic() + 1.0
    while isinstance(d, Pending):  # another worker is deciding the same event id: wait for its decision
        found = service.pending_decision(d)
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise HTTPException(409, detail="the same event is being decided by another request; retry",
                                headers={"Retry-After": "1"})
        time.sleep(0.02)
    return d


async def _event(request: Request, kind: EventKind) -> Event | Response:
    body = await request.body()
    if len(body) > request.app.state.service.settings.max_body:
        raise HTTPException(413, detail="body too large")
    try:
        event = decode_event(body)
    except EventError as exc:
        return event_error_response(exc)
    if event.kind is not kind:
        raise unprocessable(["body", "kind"], f"expected an event of kind {kind.value!r}")
    return event


def _answer(d: Decision, result: svc.ActionResult) -> Response:
    body = {"result": result.to_dict(),
            "decision": msgspec.to_builtins(msgspec.structs.replace(d, features={}))}
    return Response(msgspec.json.encode(body), media_type="application/json")


_EVENT_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/Event"}}}}}


@router.post("/v1/scans", response_class=Response, openapi_extra=_EVENT_BODY, responses=ERRS,
             summary="Scan a one-item-one-code code: check it, decide, draw, pay")
async def post_scan(request: Request, tenant: str = Depends(tenant_of)) -> Response:
    event = await _event(request, EventKind.SCAN)
    if isinstance(event, Response):
        return event
    if not event.code_id:
        raise unprocessable(["body", "code_id"], "a scan carries the scanned code in code_id")
    from starlette.concurrency import run_in_threadpool

    def work() -> Response:
        d = _decide(request, tenant, event)
        return _answer(d, _call(request, svc.scan, tenant, event, d, signer(tenant)))

    return await run_in_threadpool(work)


@router.post("/v1/claims", response_class=Response, openapi_extra=_EVENT_BODY, responses=ERRS,
             summary="Claim a coupon: decide, check limits and budget, issue")
async def post_claim(request: Request, tenant: str = Depends(tenant_of),
                     tier_id: str | None = Query(None, max_length=64)) -> Response:
    event = await _event(request, EventKind.CLAIM)
    if isinstance(event, Response):
        return event
    if not event.campaign_id:
        raise unprocessable(["body", "campaign_id"], "a claim names its campaign_id")
    from starlette.concurrency import run_in_threadpool

    def work() -> Response:
        d = _decide(request, tenant, event)
        return _answer(d, _call(request, svc.claim, tenant, event, d, tier_id))

    return await run_in_threadpool(work)


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(min_length=1, max_length=128)
    order_amount_fen: int = Field(ge=0, le=10**12)
    ts: int | None = Field(None, ge=946_684_800_000, le=4_102_444_800_000)


class RefundIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(min_length=1, max_length=128)
    ts: int | None = Field(None, ge=946_684_800_000, le=4_102_444_800_000)


@router.post("/v1/coupons/{coupon_id}/redeem", responses=ERRS, summary="Redeem a coupon at checkout (核销)")
def post_redeem(coupon_id: str, body: RedeemIn, request: Request, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    return _call(request, svc.redeem, tenant, coupon_id, body.order_id, body.order_amount_fen, body.ts).to_dict()


@router.post("/v1/coupons/{coupon_id}/refund", responses=ERRS,
             summary="A refund or return of the order reverses the redemption")
def post_refund(coupon_id: str, body: RefundIn, request: Request, tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    return _call(request, svc.refund, tenant, coupon_id, body.order_id, body.ts).to_dict()


# ---------------------------------------------------------------------------------------------------
# Challenges and reviews


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passed: bool
    ts: int | None = Field(None, ge=946_684_800_000, le=4_102_444_800_000)


class VerdictIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approve: bool
    analyst: str = Field("", max_length=128)


@router.post("/v1/challenges/{challenge_id}/result", responses=ERRS,
             summary="Report a step-up challenge's result: passed in time completes the payout")
def post_challenge(challenge_id: str, body: ChallengeIn, request: Request,
                   tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    return _call(request, svc.challenge_result, tenant, challenge_id, body.passed, body.ts).to_dict()


@router.get("/v1/reviews", responses=ERRS, summary="Payouts held for an analyst")
def get_reviews(request: Request, tenant: str = Depends(tenant_of),
                status: Literal["pending", "approved", "refused"] = "pending",
                limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
    rows = _call(request, svc.list_challenges, tenant, "review", status, limit)
    return [{k: r[k] for k in ("id", "campaign_id", "action", "event_id", "decision_id", "account_id", "ts",
                               "status", "resolved_by", "result")} for r in rows]


@router.post("/v1/reviews/{review_id}/verdict", responses=ERRS,
             summary="An analyst's verdict: approve pays the held payout, refuse records it as saved")
def post_verdict(review_id: str, body: VerdictIn, request: Request,
                 tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    return _call(request, svc.review_verdict, tenant, review_id, body.approve, body.analyst).to_dict()


# ---------------------------------------------------------------------------------------------------
# Reports


def _csv(write: Callable[[io.StringIO], None], name: str) -> Response:
    buf = io.StringIO()
    write(buf)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)  # headers are latin-1; ids may be anything
    return Response(buf.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{safe}"'})


@router.get("/v1/campaigns/{campaign_id}/report", responses={200: {"content": {"text/csv": {}}}, **ERRS},
            summary="Savings per day: paid (genuine / fraud / gang), refused (saved), genuine refusals")
def get_report(campaign_id: str, request: Request, tenant: str = Depends(tenant_of),
               format: Literal["json", "csv"] = "json") -> Any:
    rows = _call(request, report_mod.savings, tenant, campaign_id)
    if format == "csv":
        return _csv(lambda b: report_mod.write_savings_csv(b, rows), f"savings-{campaign_id}.csv")
    return {"campaign_id": campaign_id, "days": rows, "totals": report_mod.totals(rows)}


@router.get("/v1/campaigns/{campaign_id}/ledger", responses={200: {"content": {"text/csv": {}}}, **ERRS},
            summary="The campaign's ledger rows, oldest first")
def get_ledger(campaign_id: str, request: Request, tenant: str = Depends(tenant_of),
               kind: str | None = Query(None, max_length=16), limit: int = Query(1000, ge=1, le=1_000_000),
               format: Literal["json", "csv"] = "json") -> Any:
    rows = _call(request, ledger_mod.ledger_rows, tenant, campaign_id, kind, limit)
    if format == "csv":
        return _csv(lambda b: ledger_mod.write_ledger_csv(b, rows), f"ledger-{campaign_id}.csv")
    return rows


@router.get("/v1/pressure", responses=ERRS,
            summary="Campaigns (and tenants) ranked by attack pressure; every tenant for the operator's key")
def get_pressure(request: Request, tenant: str = Depends(tenant_of), since_ms: int | None = Query(None, ge=0),
                 until_ms: int | None = Query(None, ge=0)) -> dict[str, Any]:
    scope = None if os.environ.get(OPERATOR_ENV) == tenant else tenant
    request.app.state.service.dlog.flush()
    return _call(request, report_mod.pressure, scope, since_ms, until_ms)
