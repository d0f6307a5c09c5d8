"""``POST /v1/events`` served in front of FastAPI's routing: the one route on every decision's path.

A profile of one worker (docs/api.md, "service") showed FastAPI's per-request machinery (dependency
resolution of the auth ``Security`` parameters, route matching, the middleware layers, the ``Response``
class) costing more CPU than deciding the event. This plain ASGI layer answers exactly that route (method
``POST``, path ``/v1/events``) and hands every other request to the FastAPI app unchanged. It gives the
same answers as the FastAPI route in ``routers/events.py``, which stays the documented definition in the
OpenAPI document: the same key lookup (``Authorization: Bearer`` first, then ``X-Api-Key``), the same body
limit, decoder, decision, error bodies and status codes, and the same metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec

from woolguard.events import Decision, EventError, decode_event

from . import metrics
from .errors import detail, path_to_loc
from .service import PENDING_WAIT_S, DecisionService, Pending

log = logging.getLogger("woolguard.api")

_encode = msgspec.json.Encoder().encode
_JSON = [(b"content-type", b"application/json")]
_PATH = "/v1/events"


class _Refused(Exception):
    def __init__(self, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None):
        self.status = status
        self.body = body
        self.headers = headers or []


def _counter_cache() -> Any:
    cache: dict[tuple[str, str, str], Any] = {}

    def count(tenant: str, outcome: str, degraded: str) -> None:
        key = (tenant, outcome, degraded)
        child = cache.get(key)
        if child is None:
            child = cache[key] = metrics.DECISIONS.labels(tenant, outcome, degraded)
        child.inc()

    return count


class EventsFastPath:
    """ASGI wrapper: ``POST /v1/events`` here, everything else to ``app`` (FastAPI's middleware stack)."""

    def __init__(self, app: Any, owner: Any):
        self.app = app
        self.owner = owner  # the FastAPI app: its state holds the service once the lifespan started
        self._count = _counter_cache()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        service: DecisionService | None = self.owner.state.service
        if service is None:
            await self.app(scope, receive, send)
            return
        try:
            status, body, headers = await self._event(service, scope, receive)
        except _Refused as r:
            status, body, headers = r.status, _encode(r.body), r.headers
        except Exception:  # a bug: say so, keep the worker (as the app's own 500 handler does)
            metrics.ERRORS.labels("internal").inc()
            log.exception("unhandled error on POST %s", _PATH)
            status, body, headers = 500, _encode({"detail": "internal error"}), []
        if status < 0:  # the client went away before its body arrived
            return
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", str(len(body)).encode()), *_JSON, *headers]})
        await send({"type": "http.response.body", "body": body})

    async def _event(self, service: DecisionService, scope: dict[str, Any],
                     receive: Any) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        started = time.perf_counter()
        authorization = api_key = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"x-api-key":
                if api_key is None:
                    api_key = value
            elif name == b"content-length" and length is None:
                length = value
        tenant = _tenant(service, authorization, api_key)
        limit = service.settings.max_body
        if length is not None and length.isdigit() and int(length) > limit:
            metrics.ERRORS.labels("too_large").inc()
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return -1, b"", []
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    metrics.ERRORS.labels("too_large").inc()
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            event = decode_event(body)
        except EventError as exc:
            metrics.ERRORS.labels("bad_event").inc()
            kind = "json_invalid" if "JSON" in exc.message or "malformed" in exc.message.lower() else "value_error"
            raise _Refused(422, detail(path_to_loc(exc.field), exc.message, kind)) from None
        d, answer = await service.decide_answer(tenant, event)
        if answer is None:
            d = await settle(service, d)
        metrics.LATENCY.observe(time.perf_counter() - started)
        self._count(tenant, d.outcome.value, "true" if d.degraded else "false")  # type: ignore[union-attr]
        if answer is not None:  # the decision without its features, as stored under the idempotency claim
            return 200, answer, []
        if d.features:  # type: ignore[union-attr]
            d = msgspec.structs.replace(d, features={})
        return 200, _encode(d), []


def _too_large(limit: int) -> _Refused:
    return _Refused(413, {"detail": [{"loc": ["body"], "msg": f"body larger than {limit} bytes",
                                      "type": "too_large"}]})


def _tenant(service: DecisionService, authorization: bytes | None, api_key: bytes | None) -> str:
    """The tenant of the presented key, as ``auth.tenant_of`` finds it."""
    key = None
    if authorization:
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        credentials = credentials.strip()
        if scheme and credentials and scheme.lower() == "bearer":
            key = credentials
    if key is None and api_key:
        key = api_key.decode("latin-1")
    if not key:
        metrics.ERRORS.labels("auth").inc()
        raise _Refused(401, {"detail": "missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key'"},
                       [(b"www-authenticate", b"Bearer")])
    try:
        tenant = service.keys.resolve(key)
    except Exception:
        metrics.ERRORS.labels("auth_unavailable").inc()
        raise _Refused(503, {"detail": "cannot check the API key: the database is unreachable"},
                       [(b"retry-after", b"1")]) from None
    if tenant is None:
        metrics.ERRORS.labels("auth").inc()
        raise _Refused(401, {"detail": "unknown or revoked API key"}, [(b"www-authenticate", b"Bearer")])
    return tenant


async def settle(service: DecisionService, d: Decision | Pending) -> Decision:
    """The decision, waiting briefly when another worker is still deciding the same event."""
    if not isinstance(d, Pending):
        return d
    deadline = time.monotonic() + PENDING_WAIT_S
    while True:
        await asyncio.sleep(0.005)
        try:
            raw = await service.pipe.call("GET", d.key) if service.pipe is not None else service.redis.get(d.key)
        except Exception:
            raw = None
        if raw:
            return msgspec.json.decode(raw, type=Decision)
        if time.monotonic() >= deadline:
            break
    found = await asyncio.get_running_loop().run_in_executor(None, service.pending_decision, d)
    if found is None:
        raise _Refused(409, {"detail": f"event {d.event_id!r} is being decided by another request; retry shortly"},
                       [(b"retry-after", b"1")])
    return found
