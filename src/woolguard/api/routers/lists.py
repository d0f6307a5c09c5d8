"""``/v1/lists``: block, allow and review entries by entity, per campaign or global, with expiry and reason.

A change made through one worker applies there at once and in the other workers within the reload
interval. A clear phone number given for entity ``phone`` is stored as its keyed hash, the form the
engine matches.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import delete

from woolguard.rules.lists import LIST_ENTITIES
from woolguard.storage.lists import add_entry, list_entries
from woolguard.storage.schema import list_entries as entries_table

from ..auth import tenant_of
from ..errors import responses, utc
from ..service import DecisionService
from .decisions import _db

router = APIRouter(tags=["lists"])
Entity = Literal[LIST_ENTITIES]  # type: ignore[valid-type]
EPOCH_MS = {"ge": 946_684_800_000, "le": 4_102_444_800_000}


class ListEntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    list: Literal["block", "allow", "review"]
    entity: Entity  # type: ignore[valid-type]
    value: str = Field(min_length=1, max_length=128)
    campaign_id: str | None = Field(None, min_length=1, max_length=128, description="None: every campaign")
    reason: str = Field("", max_length=500)
    ttl_s: int | None = Field(None, ge=1, le=10 * 365 * 86400, description="Expire this many seconds from now")
    expires_at: int | None = Field(None, description="Expire at this time (epoch ms)", **EPOCH_MS)
    created_by: str = Field("api", max_length=64)

    @model_validator(mode="after")
    def _one_expiry(self) -> ListEntryIn:
        if self.ttl_s is not None and self.expires_at is not None:
            raise ValueError("give ttl_s or expires_at, not both")
        return self


class ListEntryOut(BaseModel):
    id: int
    list: str
    entity: str
    value: str
    campaign_id: str | None
    reason: str
    expires_at: int | None
    created_at: datetime | None = None
    created_by: str


def _out(row: dict) -> ListEntryOut:
    return ListEntryOut(id=row["id"], list=row["list_kind"], entity=row["entity_type"], value=row["value"],
                        campaign_id=row["campaign_id"], reason=row["reason"], expires_at=row["expires_at"],
                        created_at=utc(row["created_at"]), created_by=row["created_by"])


def _reload(service: DecisionService, tenant: str) -> None:
    try:
        service.reload_tenant(tenant)
    except Exception:  # the poller will pick it up
        pass


@router.post("/v1/lists", status_code=201, response_model=ListEntryOut, responses=responses(401, 422, 503),
             summary="Put a value on a list (re-adding refreshes reason and expiry)")
def post_entry(body: ListEntryIn, request: Request, tenant: str = Depends(tenant_of)) -> ListEntryOut:
    service: DecisionService = request.app.state.service
    value = body.value
    if body.entity == "phone" and not value.startswith("k:"):
        value = "k:" + service.phones.facts(value).hash
    entry_id = _db(add_entry, service.db, body.list, body.entity, value, tenant=tenant,
                   campaign_id=body.campaign_id, reason=body.reason,
                   ttl_ms=body.ttl_s * 1000 if body.ttl_s is not None else None,
                   expires_at=body.expires_at, created_by=body.created_by)
    _reload(service, tenant)
    rows = _db(list_entries, service.db, tenant, now_ms=0)
    return _out(next(r for r in rows if r["id"] == entry_id))


@router.get("/v1/lists", response_model=list[ListEntryOut], responses=responses(401, 422, 503),
            summary="Entries in force")
def get_entries(request: Request, tenant: str = Depends(tenant_of),
                list: Literal["block", "allow", "review"] | None = None,
                entity: Entity | None = None,  # type: ignore[valid-type]
                campaign_id: str | None = Query(None, max_length=128)) -> list[ListEntryOut]:
    rows = _db(list_entries, request.app.state.service.db, tenant, list_kind=list, entity_type=entity,
               campaign_id=campaign_id, now_ms=int(time.time() * 1000))
    return [_out(r) for r in rows]


@router.delete("/v1/lists/{entry_id}", status_code=204, response_class=Response,
               responses=responses(401, 404, 422, 503), summary="Take an entry off its list")
def delete_entry(entry_id: int, request: Request, tenant: str = Depends(tenant_of)) -> Response:
    service: DecisionService = request.app.state.service
    c = entries_table.c

    def run() -> int:
        with service.db.begin() as conn:
            return conn.execute(delete(entries_table).where(c.tenant_id == tenant, c.id == entry_id)).rowcount

    if entry_id > 2**62 or _db(run) == 0:
        raise HTTPException(404, detail=f"no list entry {entry_id}")
    _reload(service, tenant)
    return Response(status_code=204)
