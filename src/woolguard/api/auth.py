"""The auth dependency: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>`` → the caller's tenant id.

Every route under ``/v1`` depends on it, and every repository call below takes the tenant it returns, so
no request can name another tenant's data.
"""

from __future__ import annotations

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from . import metrics

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`")
_header = APIKeyHeader(name="X-Api-Key", auto_error=False, description="`X-Api-Key: <key>`")


async def tenant_of(request: Request, bearer: HTTPAuthorizationCredentials | None = Security(_bearer),
              api_key: str | None = Security(_header)) -> str:
    key = bearer.credentials if bearer is not None else api_key
    if not key:
        metrics.ERRORS.labels("auth").inc()
        raise HTTPException(401, detail="missing API key: send 'Authorization: Bearer <key>' or 'X-Api-Key'",
                            headers={"WWW-Authenticate": "Bearer"})
    service = request.app.state.service
    try:
        tenant = service.keys.resolve(key)
    except Exception as exc:
        metrics.ERRORS.labels("auth_unavailable").inc()
        raise HTTPException(503, detail="cannot check the API key: the database is unreachable",
                            headers={"Retry-After": "1"}) from exc
    if tenant is None:
        metrics.ERRORS.labels("auth").inc()
        raise HTTPException(401, detail="unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    return tenant
