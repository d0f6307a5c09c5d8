"""``POST /v1/labels`` and ``GET /v1/labels``: feedback that an event or an account is fraud or genuine."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from woolguard.storage.labels import add_label, list_labels

from ..auth import tenant_of
from ..errors import responses
from .decisions import _db

router = APIRouter(tags=["labels"])
EPOCH_MS = {"ge": 946_684_800_000, "le": 4_102_444_800_000}


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_type: Literal["event", "account"] = Field(description="What is labelled")
    target_id: str = Field(min_length=1, max_length=128, description="The event id or the account id")
    label: Literal["fraud", "genuine"]
    source: str = Field("api", max_length=64, description="review, complaint, chargeback, gang...")
    note: str = Field("", max_length=2000)
    ts: int | None = Field(None, description="When it was found (epoch ms); now if absent", **EPOCH_MS)


class LabelOut(BaseModel):
    id: int
    target_type: str
    target_id: str
    label: str
    source: str
    note: str
    ts: int


def _out(row: dict) -> LabelOut:
    return LabelOut(**{k: row[k] for k in LabelOut.model_fields})


@router.post("/v1/labels", status_code=201, response_model=LabelOut, responses=responses(401, 422, 503),
             summary="Record feedback on an event or an account")
def post_label(body: LabelIn, request: Request, tenant: str = Depends(tenant_of)) -> LabelOut:
    db = request.app.state.service.db
    label_id = _db(add_label, db, body.target_type, body.target_id, body.label, tenant=tenant,
                   source=body.source, note=body.note, ts=body.ts)
    rows = _db(list_labels, db, tenant, target_type=body.target_type, target_id=body.target_id)
    return _out(next(r for r in rows if r["id"] == label_id))


@router.get("/v1/labels", response_model=list[LabelOut], responses=responses(401, 422, 503),
            summary="Labels, oldest first")
def get_labels(request: Request, tenant: str = Depends(tenant_of),
               target_type: Literal["event", "account"] | None = None,
               target_id: str | None = Query(None, max_length=128),
               since: int | None = Query(None, ge=0, le=2**62)) -> list[LabelOut]:
    rows = _db(list_labels, request.app.state.service.db, tenant, target_type=target_type, target_id=target_id,
               since=since)
    return [_out(r) for r in rows]
