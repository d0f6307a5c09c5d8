"""The model registry: versioned artifacts on disk, which one acts, which one shadows, and rollback.

Layout (``root`` is ``$WOOLGUARD_MODELS_DIR`` or ``./models``)::

    <root>/<name>/v0001/model.txt     LightGBM text model
    <root>/<name>/v0001/meta.json     training window, features, calibration, metrics, levels, policy thresholds,
                                      drift reference, parameters, where the data came from
    <root>/<name>/v0001/report.json   the training report (and report.html)
    <root>/<name>/state.json          {"active": 1, "shadow": 2, "history": [{"ts", "action", "version"}, ...]}

Versions are never rewritten. ``activate`` makes one act; ``rollback`` goes back to the version active before the
current one; ``shadow`` scores a version beside the active one without acting on it. Every change is appended to
the history with its time.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from woolguard.model.features import FeatureSpec
from woolguard.model.scorer import Calibration, LightGBMScorer, ShadowScorer

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class RegistryError(ValueError):
    pass


def default_root() -> Path:
    return Path(os.environ.get("WOOLGUARD_MODELS_DIR", "models"))


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_default), "utf-8")
    tmp.replace(path)


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON: {type(o).__name__}")


class Registry:
    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def _dir(self, name: str) -> Path:
        if not NAME_RE.match(name):
            raise RegistryError(f"model name {name!r}: use 1-64 of A-Z a-z 0-9 _ . -")
        return self.root / name

    def versions(self, name: str) -> list[int]:
        d = self._dir(name)
        if not d.is_dir():
            return []
        return sorted(int(p.name[1:]) for p in d.iterdir() if p.is_dir() and re.fullmatch(r"v\d{4,}", p.name))

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_RE.match(p.name))

    def path(self, name: str, version: int) -> Path:
        return self._dir(name) / f"v{version:04d}"

    def save(self, name: str, model_text: str, meta: dict[str, Any], report_html: str | None = None) -> int:
        """Store a new version (never overwrites one); returns its number."""
        d = self._dir(name)
        d.mkdir(parents=True, exist_ok=True)
        version = (self.versions(name) or [0])[-1] + 1
        while True:
            vdir = self.path(name, version)
            try:
                vdir.mkdir()
                break
            except FileExistsError:  # a concurrent save took it
                version += 1
        (vdir / "model.txt").write_text(model_text, "utf-8")
        meta = {**meta, "name": name, "version": version, "created_ms": int(time.time() * 1000)}
        _write_json(vdir / "meta.json", meta)
        if report_html is not None:
            (vdir / "report.html").write_text(report_html, "utf-8")
        return version

    def meta(self, name: str, version: int) -> dict[str, Any]:
        p = self.path(name, version) / "meta.json"
        if not p.is_file():
            raise RegistryError(f"no model {name} v{version} in {self.root}")
        return json.loads(p.read_text("utf-8"))

    def state(self, name: str) -> dict[str, Any]:
        p = self._dir(name) / "state.json"
        if not p.is_file():
            return {"active": None, "shadow": None, "history": []}
        return json.loads(p.read_text("utf-8"))

    def _set(self, name: str, action: str, **changes: Any) -> dict[str, Any]:
        st = self.state(name)
        st.update(changes)
        st["history"].append({"ts": int(time.time() * 1000), "action": action,
                              **{k: v for k, v in changes.items()}})
        _write_json(self._dir(name) / "state.json", st)
        return st

    def _check(self, name: str, version: int) -> None:
        if version not in self.versions(name):
            raise RegistryError(f"no model {name} v{version} in {self.root} (versions: {self.versions(name)})")

    def activate(self, name: str, version: int) -> dict[str, Any]:
        self._check(name, version)
        st = self.state(name)
        shadow = None if st.get("shadow") == version else st.get("shadow")
        return self._set(name, "activate", active=version, shadow=shadow)

    def rollback(self, name: str) -> dict[str, Any]:
        """Activate the version that was active before the current one."""
        st = self.state(name)
        actives = [h["active"] for h in st["history"] if h["action"] in ("activate", "rollback")]
        current = st.get("active")
        # walk back past the current one (and repeats of it) to the one before
        for v in reversed(actives):
            if v != current and v is not None:
                return self._set(name, "rollback", active=v)
        raise RegistryError(f"{name}: nothing to roll back to (active {current})")

    def shadow(self, name: str, version: int | None) -> dict[str, Any]:
        if version is not None:
            self._check(name, version)
        return self._set(name, "shadow", shadow=version)

    def scorer(self, name: str, version: int) -> LightGBMScorer:
        meta = self.meta(name, version)
        text = (self.path(name, version) / "model.txt").read_text("utf-8")
        cal = meta.get("calibration", {})
        return LightGBMScorer(text, FeatureSpec.from_dict(meta["features"]),
                              Calibration(cal.get("a", 1.0), cal.get("b", 0.0)), meta.get("levels", []),
                              ref=f"{name}@v{version}", context=meta.get("context_reference") or {})

    def engine_scorer(self, name: str) -> LightGBMScorer | ShadowScorer | None:
        """What the engine should be given: the active model, wrapped with the shadow one if any."""
        st = self.state(name)
        active = self.scorer(name, st["active"]) if st.get("active") else None
        if st.get("shadow"):
            return ShadowScorer(active, self.scorer(name, st["shadow"]))
        return active
