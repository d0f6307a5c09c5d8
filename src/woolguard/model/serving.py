"""Serving a tenant's model: which one is active, and swapping it into a running engine without a restart.

Each tenant has its own registry (:class:`~woolguard.model.registry.Registry`) at ``<models_dir>/<tenant>``, where
``models_dir`` is the service setting ``extra["models_dir"]``, else ``$WOOLGUARD_MODELS_DIR``, else ``./models``.
A tenant serves one model at a time: of its model names with an active version, the one activated (or rolled back,
or shadowed) most recently; its shadow version, if any, is scored beside it (:class:`ShadowScorer`).

:class:`ModelLoader` is what the service's poller calls (``refresh``): a cheap fingerprint of the tenant's
``state.json`` files decides whether anything changed; only then the artifacts are read and the engine's ``model``
is replaced, in one assignment (a request in flight keeps the scorer it started with). A model that cannot be
loaded (a broken file, features the engine does not produce) is logged and the engine keeps what it had.

The model acts only through policy rules on ``model_score`` (``meta["policy_thresholds"]["rules"]``, added to the
tenant's policy through ``/v1/policies``); without them its score is computed and logged, never acted on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from woolguard.model.features import EXCLUDED
from woolguard.model.registry import NAME_RE, Registry, RegistryError, default_root

log = logging.getLogger("woolguard.model")


def models_dir(extra: Mapping[str, str] | None = None) -> Path:
    if extra and extra.get("models_dir"):
        return Path(extra["models_dir"])
    return default_root()


def tenant_registry(root: Path, tenant: str) -> Registry:
    if not NAME_RE.match(tenant):
        raise RegistryError(f"tenant {tenant!r} is not usable as a registry directory")
    return Registry(root / tenant)


def served_name(reg: Registry) -> str | None:
    """The model name the tenant serves: of those with an active or shadow version, the latest changed."""
    best: tuple[int, str] | None = None
    for name in reg.names():
        st = reg.state(name)
        if not st.get("active") and not st.get("shadow"):
            continue
        ts = max((h.get("ts", 0) for h in st.get("history", [])), default=0)
        if best is None or ts > best[0]:
            best = (ts, name)
    return best[1] if best else None


def missing_features(meta: Mapping[str, Any], engine_features: Sequence[str]) -> list[str]:
    """Features a model reads that the engine does not produce (an imported log's model, say)."""
    have = set(engine_features) - EXCLUDED
    return [n for n in meta.get("features", {}).get("names", []) if n not in have]


def _fingerprint(reg: Registry) -> tuple[Any, ...]:
    out = []
    for name in reg.names():
        p = reg.root / name / "state.json"
        try:
            s = os.stat(p)
        except OSError:
            continue
        out.append((name, s.st_mtime_ns, s.st_size))
    return tuple(out)


class ModelLoader:
    """Keeps each tenant's engine on the tenant's served model (see the module's docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self._fp: dict[str, tuple[Any, ...]] = {}
        self.served: dict[str, dict[str, Any]] = {}  # tenant -> {"name", "active", "shadow"}

    def refresh(self, tenant: str, engine: Any, force: bool = False) -> bool:
        """Swap the tenant's served model into ``engine`` if it changed; True when the engine's model changed."""
        try:
            reg = tenant_registry(self.root, tenant)
        except RegistryError:
            return False
        fp = _fingerprint(reg)
        if not force and self._fp.get(tenant) == fp:
            return False
        try:
            name = served_name(reg)
            scorer = None
            served: dict[str, Any] = {"name": name, "active": None, "shadow": None}
            if name is not None:
                st = reg.state(name)
                for key in ("active", "shadow"):
                    v = st.get(key)
                    if v:
                        miss = missing_features(reg.meta(name, v), engine.feature_names)
                        if miss:
                            raise RegistryError(f"{name} v{v} reads features the engine does not produce: "
                                                f"{miss[:5]}")
                        served[key] = v
                scorer = reg.engine_scorer(name)
        except Exception as exc:  # keep serving what we had; say why once per change
            log.error("tenant %s: model not loaded: %s", tenant, exc)
            self._fp[tenant] = fp
            return False
        self._fp[tenant] = fp
        changed = engine.model is not None or scorer is not None
        engine.model = scorer
        self.served[tenant] = served
        if name is not None:
            log.info("tenant %s: model %s active v%s shadow v%s", tenant, name, served["active"], served["shadow"])
        return changed


def loader_for(service: Any) -> ModelLoader:
    """The service's loader (one per service: its fingerprints belong to its engines)."""
    ld = getattr(service, "model_loader", None)
    if ld is None:
        ld = ModelLoader(models_dir(service.settings.extra))
        service.model_loader = ld
    return ld


def refresh_models(service: Any, tenant: str | None = None, force: bool = False) -> None:
    """The service's hook: bring each running tenant's engine (or one tenant's) onto its served model."""
    ld = loader_for(service)
    for t, rt in list(service.tenants.items()):
        if tenant is None or t == tenant:
            try:
                ld.refresh(t, rt.engine, force=force)
            except Exception as exc:  # pragma: no cover - a model problem must never stop the poller
                log.error("tenant %s: model refresh failed: %s", t, exc)
