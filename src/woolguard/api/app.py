"""The FastAPI application: ``create_app(settings)`` builds it, ``app_from_env()`` is what uvicorn workers load."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import woolguard
from woolguard.events import Decision, Event

from . import metrics
from .fastpath import EventsFastPath
from .routers import decisions, events, gangs, labels, lists, models, ops, policies
from .service import DecisionService
from .settings import Settings

log = logging.getLogger("woolguard.api")


def _msgspec_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (Event, Decision, events.EventBatch, events.DecisionBatch, decisions.DecisionRecord,
         decisions.DecisionList), ref_template="#/components/schemas/{name}")
    return components


class WoolguardAPI(FastAPI):
    """FastAPI, with ``POST /v1/events`` answered before FastAPI's own per-request work (see fastpath.py)
    unless OpenTelemetry is configured (then the request goes through FastAPI's telemetry first)."""

    fast: EventsFastPath | None = None
    telemetry: bool = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fast = self.fast
        if fast is not None and not self.telemetry and scope["type"] == "http":
            await fast(scope, receive, send)  # hands anything but POST /v1/events to the full stack
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, service: DecisionService | None = None) -> FastAPI:
    """The app; the service (database, engines, threads) starts with the app's lifespan."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or DecisionService(settings)
        svc.start()
        app.state.service = svc
        from woolguard.runtime import freeze

        freeze()  # the service's own start-up state (database, pools, threads) joins the module-level objects
        telemetry = getattr(app, "_native_telemetry", None)
        try:
            app.telemetry = bool(telemetry.enabled()) if telemetry is not None else False
        except Exception:  # pragma: no cover - a FastAPI without it, or a broken provider: keep its path
            app.telemetry = True
        try:
            yield
        finally:
            app.state.service = None
            await svc.drain()
            svc.close()

    app = WoolguardAPI(title="woolguard", version=getattr(woolguard, "__version__", "0.1.0"), lifespan=lifespan,
                  description="Risk decisions for coupon, red-packet and scan-to-win campaigns. "
                              "See docs/api.md.")
    app.state.service = None
    app.state.settings = settings
    for module in (events, decisions, labels, lists, policies, ops, gangs, models):
        app.include_router(module.router)
    from .routers import campaigns  # campaigns, codes, coupons, challenges, reviews, savings, pressure
    app.include_router(campaigns.router)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.ERRORS.labels("bad_request").inc()
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": a 422 naming the body, like the rest
            metrics.ERRORS.labels("bad_request").inc()
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc.detail), "type": "json_invalid"}]},
                                status_code=422)
        return await http_exception_handler(request, exc)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:  # a bug: say so, keep the worker
        metrics.ERRORS.labels("internal").inc()
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(_msgspec_components())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # POST /v1/events is answered in front of FastAPI's routing (see fastpath.py); the rest goes through it.
    build_stack = app.build_middleware_stack

    def build() -> Any:
        stack = EventsFastPath(build_stack(), app)
        app.fast = EventsFastPath(_FullStack(app), app)
        return stack

    app.build_middleware_stack = build  # type: ignore[method-assign]
    return app


class _FullStack:
    """What :class:`WoolguardAPI`'s shortcut hands every other request to: FastAPI's usual entry point."""

    def __init__(self, app: WoolguardAPI):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await FastAPI.__call__(self.app, scope, receive, send)


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call (``woolguard serve`` sets the environment first)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from woolguard.runtime import tune_gc

    app = create_app(Settings.from_env())
    tune_gc()  # each worker: keep the cyclic collector off the feature state
    return app
