"""``/v1/policies``: upload, validate, list, activate a version, roll back.

Every saved document is a new version; a tenant serves one policy at a time (activating one deactivates
the tenant's others). Every worker polls the active version and swaps it in without a restart.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from woolguard.rules.policy import Policy, PolicyError
from woolguard.storage import policies as store

from ..auth import tenant_of
from ..errors import responses, utc
from ..service import DecisionService
from .decisions import _db

router = APIRouter(tags=["policies"])
PolicyId = Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Version = Path(ge=1, le=2**31 - 1)


class PolicyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=1_000_000, description="The policy document (YAML or JSON)")
    activate: bool = Field(False, description="Make this version the served one")


class PolicyCheck(BaseModel):
    valid: bool
    policy_id: str
    rules: int
    failure_mode: str


class PolicyOut(BaseModel):
    policy_id: str
    version: int
    active: bool
    created_at: datetime | None = None
    body: str | None = None


class Served(BaseModel):
    policy: str = Field(description="policy_id@version served by this worker ('default@1': the built-in one)")
    failure_mode: str
    stored: PolicyOut | None = None


def _check(service: DecisionService, tenant: str, text: str) -> Policy:
    engine = service.runtime(tenant).engine
    try:
        policy = service.build_policy(engine, text)
    except PolicyError as exc:
        raise HTTPException(422, detail=[{"loc": ["body", "body"], "msg": str(exc), "type": "policy_error",
                                          "ctx": exc.to_dict()}]) from None
    except Exception as exc:  # anything the parser throws is the document's fault
        raise HTTPException(422, detail=[{"loc": ["body", "body"], "msg": f"{type(exc).__name__}: {exc}",
                                          "type": "policy_error"}]) from None
    if not isinstance(policy.id, str) or not policy.id or len(policy.id) > 128:
        raise HTTPException(422, detail=[{"loc": ["body", "body"], "msg": "the policy needs an 'id' (1-128 chars)",
                                          "type": "policy_error"}])
    return policy


def _out(v: store.PolicyVersion, body: bool = False) -> PolicyOut:
    return PolicyOut(policy_id=v.policy_id, version=v.version, active=v.active, created_at=utc(v.created_at),
                     body=v.body if body else None)


def _refresh(service: DecisionService, tenant: str) -> None:
    try:
        service.reload_tenant(tenant)
    except Exception:  # the poller will pick it up
        pass


@router.post("/v1/policies/validate", response_model=PolicyCheck, responses=responses(401, 422, 503),
             summary="Check a policy document without saving it")
def validate(body: PolicyIn, request: Request, tenant: str = Depends(tenant_of)) -> PolicyCheck:
    policy = _check(request.app.state.service, tenant, body.body)
    return PolicyCheck(valid=True, policy_id=policy.id, rules=len(policy.rules), failure_mode=policy.failure_mode)


@router.post("/v1/policies", status_code=201, response_model=PolicyOut, responses=responses(401, 422, 503),
             summary="Save a policy document as the next version of its id (and activate it if asked)")
def upload(body: PolicyIn, request: Request, tenant: str = Depends(tenant_of)) -> PolicyOut:
    service: DecisionService = request.app.state.service
    policy = _check(service, tenant, body.body)
    saved = _db(store.save_policy, service.db, policy.id, body.body, tenant=tenant)
    if body.activate:
        _db(service.activate, tenant, saved.policy_id, saved.version)
        _refresh(service, tenant)
        saved = _db(store.get_policy, service.db, saved.policy_id, saved.version, tenant=tenant)
    return _out(saved)


@router.get("/v1/policies", response_model=list[PolicyOut], responses=responses(401, 503),
            summary="Every saved version, oldest first")
def versions(request: Request, tenant: str = Depends(tenant_of)) -> list[PolicyOut]:
    return [_out(v) for v in _db(store.list_versions, request.app.state.service.db, tenant=tenant)]


@router.get("/v1/policies/active", response_model=Served, responses=responses(401, 503),
            summary="The policy this worker serves for the tenant")
def served(request: Request, tenant: str = Depends(tenant_of)) -> Served:
    service: DecisionService = request.app.state.service
    rt = service.runtime(tenant)
    stored = None
    if rt.policy_key is not None:
        v = _db(store.get_policy, service.db, rt.policy_key[0], rt.policy_key[1], tenant=tenant)
        stored = _out(v, body=True) if v is not None else None
    return Served(policy=rt.engine.policy.ref, failure_mode=rt.engine.policy.failure_mode, stored=stored)


@router.get("/v1/policies/{policy_id}/versions/{version}", response_model=PolicyOut,
            responses=responses(401, 404, 422, 503), summary="One saved version, with its document")
def one(request: Request, policy_id: str = PolicyId, version: int = Version,
        tenant: str = Depends(tenant_of)) -> PolicyOut:
    v = _db(store.get_policy, request.app.state.service.db, policy_id, version, tenant=tenant)
    if v is None:
        raise HTTPException(404, detail=f"no policy {policy_id}@{version}")
    return _out(v, body=True)


@router.post("/v1/policies/{policy_id}/versions/{version}/activate", response_model=PolicyOut,
             responses=responses(401, 404, 422, 503), summary="Serve this version (every worker, within ~1 s)")
def activate(request: Request, policy_id: str = PolicyId, version: int = Version,
             tenant: str = Depends(tenant_of)) -> PolicyOut:
    service: DecisionService = request.app.state.service
    try:
        _db(service.activate, tenant, policy_id, version)
    except LookupError:
        raise HTTPException(404, detail=f"no policy {policy_id}@{version}") from None
    _refresh(service, tenant)
    return _out(_db(store.get_policy, service.db, policy_id, version, tenant=tenant))


@router.post("/v1/policies/{policy_id}/rollback", response_model=PolicyOut,
             responses=responses(401, 404, 422, 503),
             summary="Serve the newest version older than the active one")
def rollback(request: Request, policy_id: str = PolicyId, tenant: str = Depends(tenant_of)) -> PolicyOut:
    service: DecisionService = request.app.state.service
    try:
        v = _db(store.rollback_policy, service.db, policy_id, tenant=tenant)
    except LookupError as exc:
        raise HTTPException(404, detail=str(exc)) from None
    _db(service.activate, tenant, v.policy_id, v.version)
    _refresh(service, tenant)
    return _out(v)


