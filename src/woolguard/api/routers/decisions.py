"""``GET /v1/decisions/{id}`` (with features and reasons) and ``GET /v1/decisions`` (filtered, paged)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from woolguard.events import Decision
from woolguard.storage.decision_log import get_decision, list_decisions

from ..auth import tenant_of
from ..errors import responses, unprocessable
from ..service import DecisionService, decision_from_row

router = APIRouter(tags=["decisions"])


class DecisionRecord(Decision, kw_only=True):
    """A logged decision: the decision with its features, and the (normalised) event it was made for."""

    ts: int
    kind: str
    account_id: str
    campaign_id: str | None = None
    event: dict[str, Any] = {}  # noqa: RUF012 - msgspec copies mutable defaults


class DecisionList(msgspec.Struct):
    items: list[DecisionRecord]
    next_cursor: str | None = None


_encode = msgspec.json.Encoder().encode


def record(row: dict[str, Any]) -> DecisionRecord:
    d = decision_from_row(row)
    return DecisionRecord(**{f: getattr(d, f) for f in d.__struct_fields__}, ts=row["ts"], kind=row["kind"],
                          account_id=row["account_id"], campaign_id=row["campaign_id"], event=row["event"] or {})


def _db(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except (ValueError, LookupError, HTTPException):
        raise
    except Exception as exc:
        raise HTTPException(503, detail="the database is unreachable; retry later",
                            headers={"Retry-After": "1"}) from exc


def _schema(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}


@router.get("/v1/decisions/{decision_id}", summary="One decision with its features and reasons",
            response_class=Response,
            responses={200: {"description": "The decision", **_schema("DecisionRecord")},
                       **responses(401, 404, 422, 503)})
def get_one(decision_id: str, request: Request, tenant: str = Depends(tenant_of)) -> Response:
    """``decision_id`` may also be the event id."""
    service: DecisionService = request.app.state.service
    service.dlog.flush()  # read your own writes: this worker's buffered rows go in first
    row = _db(get_decision, service.db, tenant, decision_id)
    if row is None:
        raise HTTPException(404, detail=f"no decision {decision_id!r}")
    return Response(_encode(record(row)), media_type="application/json")


@router.get("/v1/decisions", summary="Decisions, newest first, filtered", response_class=Response,
            responses={200: {"description": "A page of decisions", **_schema("DecisionList")},
                       **responses(401, 422, 503)})
def get_many(request: Request, tenant: str = Depends(tenant_of),
             since: int | None = Query(None, ge=0, le=2**62, description="epoch ms, inclusive"),
             until: int | None = Query(None, ge=0, le=2**62, description="epoch ms, exclusive"),
             outcome: Literal["pass", "verify", "review", "reject"] | None = None,
             account: str | None = Query(None, max_length=128),
             campaign: str | None = Query(None, max_length=128),
             kind: str | None = Query(None, max_length=32),
             limit: int = Query(100, ge=1, le=1000),
             cursor: str | None = Query(None, max_length=512)) -> Response:
    service: DecisionService = request.app.state.service
    service.dlog.flush()
    try:
        page = _db(list_decisions, service.db, tenant, since=since, until=until, outcome=outcome, account=account,
                   campaign=campaign, kind=kind, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise unprocessable(["query", "cursor"], f"invalid cursor: {exc}") from None
    body = DecisionList([record(r) for r in page.items], page.next_cursor)
    return Response(_encode(body), media_type="application/json")
