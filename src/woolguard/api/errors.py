"""Error bodies: every 4xx names what is wrong, in FastAPI's ``{"detail": [{"loc", "msg", "type"}]}`` shape."""

from __future__ import annotations

import re
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from woolguard.events import EventError

_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def path_to_loc(path: str, root: str = "body") -> list[str | int]:
    """``$.events[3].account.id`` -> ``["body", "events", 3, "account", "id"]``."""
    loc: list[str | int] = [root]
    for name, index in _STEP.findall(path[1:] if path.startswith("$") else path):
        loc.append(int(index) if index else name)
    return loc


def detail(loc: list[Any], msg: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": loc, "msg": msg, "type": kind}]}


def event_error_response(exc: EventError) -> JSONResponse:
    kind = "json_invalid" if "JSON" in exc.message or "malformed" in exc.message.lower() else "value_error"
    return JSONResponse(detail(path_to_loc(exc.field), exc.message, kind), status_code=422)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, detail=[{"loc": ["body"], "msg": f"body larger than {limit} bytes",
                                       "type": "too_large"}])


def unprocessable(loc: list[Any], msg: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": kind}])


#: OpenAPI descriptions of the error responses every route may give.
VALIDATION_SCHEMA = {"$ref": "#/components/schemas/HTTPValidationError"}
MESSAGE_SCHEMA = {"type": "object", "properties": {"detail": {}}, "required": ["detail"]}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {401: "Missing, unknown or revoked API key", 404: "Not found (in this tenant)",
            409: "Conflict", 413: "Body too large", 422: "Invalid input; `loc` names the field",
            503: "A dependency is unreachable; retry later"}
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        schema = VALIDATION_SCHEMA if code in (413, 422) else MESSAGE_SCHEMA
        out[code] = {"description": text[code], "content": {"application/json": {"schema": schema}}}
    return out


def utc(value: Any) -> Any:
    """Database timestamps as aware UTC datetimes (SQLite hands them back naive)."""
    from datetime import UTC, datetime

    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
