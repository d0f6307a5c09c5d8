"""``/v1/models``: the tenant's model registry: list, one version with its metrics, activate, roll back, shadow.

The registry is on disk (``model/serving.py``: ``<models_dir>/<tenant>/<name>/vNNNN``), written by
``woolguard train --models <models_dir>/<tenant>``. A change made here is swapped into this worker's engine at once
and into every other worker's on its next poll (~1 s), like a policy activation. A model acts only through the
policy rules on ``model_score`` (each version's ``policy_thresholds.rules``); shadow versions are scored and logged
(``model_shadow_score``), never acted on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from woolguard.model.registry import Registry, RegistryError
from woolguard.model.serving import loader_for, missing_features, refresh_models, tenant_registry

from ..auth import tenant_of
from ..errors import responses
from ..service import DecisionService

router = APIRouter(tags=["models"])
ModelName = Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
Version = Path(ge=1, le=2**31 - 1)
#: Large parts of a version's metadata left out of the API's answer (they stay in report.json).
HEAVY = ("reference", "curves")


class ModelVersion(BaseModel):
    name: str
    version: int
    active: bool
    shadow: bool
    split: str | None = None
    test_auroc: float | None = None
    test_auprc: float | None = None
    created_ms: int | None = None
    source: str | None = None


class ModelState(BaseModel):
    name: str
    active: int | None
    shadow: int | None
    history: list[dict[str, Any]]


class ShadowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(description="Version to score beside the active one; null stops shadowing",
                                ge=1, le=2**31 - 1)


class Served(BaseModel):
    name: str | None = Field(description="The model the tenant serves (of those with an active or shadow "
                                         "version, the latest changed); null: none")
    active: int | None
    shadow: int | None
    scorer: str | None = Field(description="What this worker's engine scores with (name@version)")


def _reg(request: Request, tenant: str) -> Registry:
    service: DecisionService = request.app.state.service
    try:
        return tenant_registry(loader_for(service).root, tenant)
    except RegistryError as exc:
        raise HTTPException(422, detail=str(exc)) from None


def _row(reg: Registry, name: str, v: int, st: dict[str, Any]) -> ModelVersion:
    m = reg.meta(name, v)
    test = m.get("metrics", {}).get("test", {})
    return ModelVersion(name=name, version=v, active=st.get("active") == v, shadow=st.get("shadow") == v,
                        split=m.get("split", {}).get("mode"), test_auroc=test.get("auroc"),
                        test_auprc=test.get("auprc"), created_ms=m.get("created_ms"),
                        source=m.get("source", {}).get("kind"))


def _known(reg: Registry, name: str, version: int | None = None) -> None:
    versions = reg.versions(name)
    if not versions:
        raise HTTPException(404, detail=f"no model {name!r}")
    if version is not None and version not in versions:
        raise HTTPException(404, detail=f"no model {name} v{version} (versions: {versions})")


def _servable(request: Request, tenant: str, reg: Registry, name: str, version: int) -> None:
    engine = request.app.state.service.runtime(tenant).engine
    miss = missing_features(reg.meta(name, version), engine.feature_names)
    if miss:
        raise HTTPException(422, detail=[{"loc": ["path", "version"], "type": "model_error",
                                          "msg": f"{name} v{version} reads features the engine does not produce "
                                                 f"(an imported log's model?): {', '.join(miss[:8])}"}])


def _state(reg: Registry, name: str, st: dict[str, Any], request: Request, tenant: str) -> ModelState:
    refresh_models(request.app.state.service, tenant)
    return ModelState(name=name, active=st.get("active"), shadow=st.get("shadow"), history=st.get("history", []))


@router.get("/v1/models", response_model=list[ModelVersion], responses=responses(401),
            summary="Every model version of the tenant, with its test metrics and state")
def list_models(request: Request, tenant: str = Depends(tenant_of)) -> list[ModelVersion]:
    reg = _reg(request, tenant)
    out = []
    for name in reg.names():
        st = reg.state(name)
        out += [_row(reg, name, v, st) for v in reg.versions(name)]
    return out


@router.get("/v1/models/served", response_model=Served, responses=responses(401),
            summary="The model this worker scores with for the tenant")
def served(request: Request, tenant: str = Depends(tenant_of)) -> Served:
    service: DecisionService = request.app.state.service
    engine = service.runtime(tenant).engine
    s = loader_for(service).served.get(tenant, {})
    model = engine.model
    ref = getattr(model, "ref", None) or getattr(getattr(model, "active", None), "ref", None)
    return Served(name=s.get("name"), active=s.get("active"), shadow=s.get("shadow"), scorer=ref)


@router.get("/v1/models/{name}", response_model=ModelState, responses=responses(401, 404, 422),
            summary="A model's state: active and shadow versions, history of changes")
def model_state(request: Request, name: str = ModelName, tenant: str = Depends(tenant_of)) -> ModelState:
    reg = _reg(request, tenant)
    _known(reg, name)
    st = reg.state(name)
    return ModelState(name=name, active=st.get("active"), shadow=st.get("shadow"), history=st.get("history", []))


@router.get("/v1/models/{name}/versions/{version}", responses=responses(401, 404, 422),
            summary="One version's metadata: training window, features, metrics, thresholds, drift")
def one(request: Request, name: str = ModelName, version: int = Version,
        tenant: str = Depends(tenant_of)) -> dict[str, Any]:
    reg = _reg(request, tenant)
    _known(reg, name, version)
    meta = reg.meta(name, version)
    return {k: v for k, v in meta.items() if k not in HEAVY}


@router.post("/v1/models/{name}/versions/{version}/activate", response_model=ModelState,
             responses=responses(401, 404, 422), summary="Act on this version (every worker, within ~1 s)")
def activate(request: Request, name: str = ModelName, version: int = Version,
             tenant: str = Depends(tenant_of)) -> ModelState:
    reg = _reg(request, tenant)
    _known(reg, name, version)
    _servable(request, tenant, reg, name, version)
    return _state(reg, name, reg.activate(name, version), request, tenant)


@router.post("/v1/models/{name}/rollback", response_model=ModelState, responses=responses(401, 404, 409, 422),
             summary="Act on the version that was active before the current one")
def rollback(request: Request, name: str = ModelName, tenant: str = Depends(tenant_of)) -> ModelState:
    reg = _reg(request, tenant)
    _known(reg, name)
    try:
        st = reg.rollback(name)
    except RegistryError as exc:
        raise HTTPException(409, detail=str(exc)) from None
    return _state(reg, name, st, request, tenant)


@router.post("/v1/models/{name}/shadow", response_model=ModelState, responses=responses(401, 404, 422),
             summary="Score a version beside the active one, logged and never acted on (null: stop)")
def shadow(body: ShadowIn, request: Request, name: str = ModelName, tenant: str = Depends(tenant_of)) -> ModelState:
    reg = _reg(request, tenant)
    _known(reg, name, body.version)
    if body.version is not None:
        _servable(request, tenant, reg, name, body.version)
    return _state(reg, name, reg.shadow(name, body.version), request, tenant)
