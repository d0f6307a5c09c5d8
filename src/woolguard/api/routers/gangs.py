"""``/v1/gangs``: run the gang detectors over the tenant's decision log, read the gang table with its
evidence, and put a gang's members on the review or block list.

The newest run is the one in force: its members' ``gang_score`` / ``gang_size`` reach the rules in this
worker at once and in the other workers within the reload interval. A run reads the whole window asked
for (all of the log by default) and answers when it is saved (about a second per 10k decided events).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from woolguard.storage.gangs import get_gang, get_run, latest_gangs, latest_run, list_gang_members, run_gangs

from ..auth import tenant_of
from ..errors import responses, utc
from ..service import DecisionService
from .decisions import _db

router = APIRouter(tags=["gangs"])
EPOCH_MS = {"ge": 946_684_800_000, "le": 4_102_444_800_000}
GANG_ID = Path(ge=1, le=2**31 - 1, description="The gang id (from GET /v1/gangs)")
Detector = Literal["community", "invite_hub", "lockstep"]


class GangRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: int | None = Field(None, description="Decisions from this time (epoch ms, inclusive)", **EPOCH_MS)
    until: int | None = Field(None, description="Decisions before this time (epoch ms, exclusive)", **EPOCH_MS)

    @model_validator(mode="after")
    def _ordered(self) -> GangRunIn:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class GangRunOut(BaseModel):
    id: int
    since: int | None = Field(description="Window start read (epoch ms); null: the log's beginning")
    until: int | None = Field(description="Window end (epoch ms, exclusive); null: up to now")
    events: int = Field(description="Decided events read")
    accounts: int = Field(description="Accounts in the link graph")
    links: int
    gangs: int
    members: int = Field(description="Distinct accounts in some gang")
    seconds: float
    source: str
    created_at: datetime | None = None


class SharedAttribute(BaseModel):
    attribute: str = Field(description="type=value, with @bucket for a lockstep burst (epoch s)")
    members: int = Field(description="Members holding it")


class TimelineItem(BaseModel):
    ts: int = Field(description="epoch ms")
    account: str
    attribute: str


class GangSummary(BaseModel):
    id: int
    run_id: int
    rank: int = Field(description="0: the run's strongest gang")
    detector: str = Field(description="community | invite_hub | lockstep")
    size: int
    score: float = Field(description="0..1; the members' gang_score is 100 × the best score of their gangs")
    first_ts: int = Field(description="epoch ms")
    last_ts: int = Field(description="epoch ms")
    money: float = Field(description="Value of the members' payout events in the window")
    shared_attributes: list[SharedAttribute]


class GangMemberOut(BaseModel):
    account_id: str
    gang_score: int = Field(description="The account's gang_score (0-100) in this run")
    gang_size: int


class GangDetail(GangSummary):
    timeline: list[TimelineItem]
    members: list[GangMemberOut]


class GangList(BaseModel):
    run: GangRunOut | None = Field(description="The run listed; null: no run yet")
    gangs: list[GangSummary]


class GangListIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    list: Literal["review", "block"]
    ttl_s: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="Expire this many seconds from now")
    reason: str = Field("", max_length=500, description="Default: 'gang <id>'")
    campaign_id: str | None = Field(None, min_length=1, max_length=128, description="None: every campaign")
    created_by: str = Field("api", max_length=64)


class GangListed(BaseModel):
    gang_id: int
    list: str
    accounts: int = Field(description="Member accounts put on the list")
    entry_ids: list[int]
    reason: str
    expires_at: int | None


def _run_out(run: dict[str, Any]) -> GangRunOut:
    return GangRunOut(id=run["id"], since=run["since_ms"], until=run["until_ms"], events=run["events"],
                      accounts=run["accounts"], links=run["links"], gangs=run["gangs"], members=run["members"],
                      seconds=run["seconds"], source=run["source"], created_at=utc(run["created_at"]))


def _summary(g: dict[str, Any]) -> dict[str, Any]:
    return {k: g[k] for k in GangSummary.model_fields}


def _refresh(service: DecisionService, tenant: str) -> None:
    try:
        service.refresh_gangs(tenant)
    except Exception:  # the poller will pick it up
        pass


@router.post("/v1/gangs/run", status_code=201, response_model=GangList, responses=responses(401, 422, 503),
             summary="Detect gangs in the decision log now; the new run is in force")
def post_run(request: Request, body: GangRunIn | None = None, tenant: str = Depends(tenant_of)) -> GangList:
    service: DecisionService = request.app.state.service
    body = body or GangRunIn()
    service.dlog.flush()  # this worker's buffered decisions go in first
    run = _db(run_gangs, service.db, tenant, since_ms=body.since, until_ms=body.until, source="api")
    _refresh(service, tenant)
    rows = _db(latest_gangs, service.db, tenant, run_id=run["id"])
    return GangList(run=_run_out(run), gangs=[GangSummary(**_summary(g)) for g in rows])


@router.get("/v1/gangs", response_model=GangList, responses=responses(401, 404, 422, 503),
            summary="The gangs of the newest run (or of run_id), strongest first")
def get_gangs(request: Request, tenant: str = Depends(tenant_of),
              run_id: int | None = Query(None, ge=1, le=2**31 - 1, description="An older run"),
              detector: Detector | None = None,
              min_score: float = Query(0.0, ge=0.0, le=1.0),
              limit: int = Query(100, ge=1, le=1000)) -> GangList:
    db = request.app.state.service.db
    run = _db(latest_run, db, tenant) if run_id is None else _db(get_run, db, tenant, run_id)
    if run is None:
        if run_id is not None:
            raise HTTPException(404, detail=f"no gang run {run_id}")
        return GangList(run=None, gangs=[])
    rows = _db(latest_gangs, db, tenant, run_id=run["id"], detector=detector, min_score=min_score, limit=limit)
    return GangList(run=_run_out(run), gangs=[GangSummary(**_summary(g)) for g in rows])


@router.get("/v1/gangs/{gang_id}", response_model=GangDetail, responses=responses(401, 404, 422, 503),
            summary="One gang: members, shared attributes, timeline, money")
def get_one(request: Request, gang_id: int = GANG_ID, tenant: str = Depends(tenant_of)) -> GangDetail:
    g = _db(get_gang, request.app.state.service.db, tenant, gang_id)
    if g is None:
        raise HTTPException(404, detail=f"no gang {gang_id}")
    return GangDetail(**_summary(g), timeline=g["timeline"], members=g["members"])


@router.post("/v1/gangs/{gang_id}/list", status_code=201, response_model=GangListed,
             responses=responses(401, 404, 422, 503),
             summary="Put the gang's member accounts on the review or block list")
def post_list(body: GangListIn, request: Request, gang_id: int = GANG_ID,
              tenant: str = Depends(tenant_of)) -> GangListed:
    service: DecisionService = request.app.state.service
    reason = body.reason or f"gang {gang_id}"
    now_ms = int(time.time() * 1000)
    ttl_ms = body.ttl_s * 1000 if body.ttl_s is not None else None
    ids = _db(list_gang_members, service.db, tenant, gang_id, body.list, ttl_ms=ttl_ms, reason=reason,
              campaign_id=body.campaign_id, created_by=body.created_by, now_ms=now_ms)
    if ids is None:
        raise HTTPException(404, detail=f"no gang {gang_id}")
    try:
        service.reload_tenant(tenant)
    except Exception:  # the poller will pick it up
        pass
    return GangListed(gang_id=gang_id, list=body.list, accounts=len(ids), entry_ids=ids, reason=reason,
                      expires_at=now_ms + ttl_ms if ttl_ms is not None else None)
