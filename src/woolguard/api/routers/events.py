"""``POST /v1/events`` and ``POST /v1/events/batch``: decide events.

The hot path skips FastAPI's model layer: the body is read with a size limit and decoded by msgspec
(``decode_event``), the decision is encoded by msgspec. The OpenAPI document still describes both.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request, Response

from woolguard.events import Decision, Event, EventError, decode_event

from .. import fastpath, metrics
from ..auth import tenant_of
from ..errors import BodyTooLarge, event_error_response, path_to_loc, responses
from ..service import DecisionService, Pending

router = APIRouter(tags=["events"])


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[Event], msgspec.Meta(min_length=1)]


class DecisionBatch(msgspec.Struct):
    decisions: list[Decision]


_batch_decoder = msgspec.json.Decoder(EventBatch)
_encode = msgspec.json.Encoder().encode


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        metrics.ERRORS.labels("too_large").inc()
        raise BodyTooLarge(limit)
    if length is not None:
        body = await request.body()
        if len(body) > limit:
            raise BodyTooLarge(limit)
        return body
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            metrics.ERRORS.labels("too_large").inc()
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def settle(service: DecisionService, d: Decision | Pending) -> Decision:
    """The decision, waiting briefly when another worker is still deciding the same event (409 after)."""
    try:
        return await fastpath.settle(service, d)
    except fastpath._Refused as r:
        raise HTTPException(r.status, detail=r.body["detail"],
                            headers={k.decode(): v.decode() for k, v in r.headers}) from None


def _count(tenant: str, d: Decision, started: float) -> None:
    metrics.LATENCY.observe(time.perf_counter() - started)
    metrics.DECISIONS.labels(tenant, d.outcome.value, "true" if d.degraded else "false").inc()


def _event_body() -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Event"}}}}}


@router.post("/v1/events", summary="Decide one event", openapi_extra=_event_body(),
             response_class=Response,
             responses={200: {"description": "The decision (features are in GET /v1/decisions/{id})",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Decision"}}}},
                        **responses(401, 409, 413, 422, 503)})
async def post_event(request: Request, tenant: str = Depends(tenant_of)) -> Response:
    started = time.perf_counter()
    service: DecisionService = request.app.state.service
    body = await read_body(request, service.settings.max_body)
    try:
        event = decode_event(body)
    except EventError as exc:
        metrics.ERRORS.labels("bad_event").inc()
        return event_error_response(exc)
    d = await settle(service, await service.decide_async(tenant, event))
    _count(tenant, d, started)
    if d.features:
        d = msgspec.structs.replace(d, features={})
    return Response(_encode(d), media_type="application/json")


@router.post("/v1/events/batch", summary="Decide several events, in order", response_class=Response,
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/EventBatch"}}}}},
             responses={200: {"description": "One decision per event, in the order sent",
                              "content": {"application/json": {
                                  "schema": {"$ref": "#/components/schemas/DecisionBatch"}}}},
                        **responses(401, 409, 413, 422, 503)})
async def post_batch(request: Request, tenant: str = Depends(tenant_of)) -> Response:
    service: DecisionService = request.app.state.service
    body = await read_body(request, service.settings.max_batch_body)
    try:
        batch = _batch_decoder.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        from woolguard.events import validation_error

        metrics.ERRORS.labels("bad_event").inc()
        return event_error_response(validation_error(exc))
    if len(batch.events) > service.settings.max_batch_events:
        metrics.ERRORS.labels("bad_event").inc()
        raise HTTPException(422, detail=[{"loc": path_to_loc("$.events"), "type": "too_long",
                                          "msg": f"at most {service.settings.max_batch_events} events per batch"}])
    out = []
    for event in batch.events:
        started = time.perf_counter()
        d = await settle(service, await service.decide_async(tenant, event))
        _count(tenant, d, started)
        out.append(msgspec.structs.replace(d, features={}) if d.features else d)
    return Response(_encode(DecisionBatch(out)), media_type="application/json")
