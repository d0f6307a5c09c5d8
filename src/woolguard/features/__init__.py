"""Velocity features: sliding-window counts, distinct counts, first-seen ages and timing regularity.

Every feature is defined once, in :mod:`woolguard.features.catalog`; the online engine, training and
backtesting all compute it through a :class:`~woolguard.features.state.FeatureState` backend
(in-process memory here, Redis in :mod:`woolguard.features.redis_state`).
"""

from typing import TYPE_CHECKING, Any

from woolguard.features.catalog import DEFAULT_WINDOWS, Window, WindowOp
from woolguard.features.state import FeatureState, MemoryState

if TYPE_CHECKING:
    from woolguard.features.redis_state import FeatureStateUnavailable, RedisState

__all__ = ["DEFAULT_WINDOWS", "FeatureState", "FeatureStateUnavailable", "MemoryState", "RedisState", "Window",
           "WindowOp"]


def __getattr__(name: str) -> Any:
    # The Redis backend is imported on first use: redis-py costs ~0.1 s to import, which no memory-only run pays.
    if name in ("RedisState", "FeatureStateUnavailable"):
        from woolguard.features import redis_state

        return getattr(redis_state, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
