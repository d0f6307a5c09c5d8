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
from .routers import decisions, events, labels, lists, ops, policies
from .service import DecisionService
from .settings import Settings

log = logging.getLogger("woolguard.api")


def _msgspec_components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (Event, Decision, events.EventBatch, events.DecisionBatch, decisions.DecisionRecord,
         decisions.DecisionList), ref_template="#/components/schemas/{name}")
    return components


def create_app(settings: Settings | None = None, *, service: DecisionService | None = None) -> FastAPI:
    """The app; the service (database, engines, threads) starts with the app's lifespan."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or DecisionService(settings)
        svc.start()
        app.state.service = svc
        try:
            yield
        finally:
            app.state.service = None
            svc.close()

    app = FastAPI(title="woolguard", version=getattr(woolguard, "__version__", "0.1.0"), lifespan=lifespan,
                  description="Risk decisions for coupon, red-packet and scan-to-win campaigns. "
                              "See docs/api.md.")
    app.state.service = None
    app.state.settings = settings
    for module in (events, decisions, labels, lists, policies, ops):
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
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call (``woolguard serve`` sets the environment first)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings.from_env())
