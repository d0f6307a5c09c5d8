"""Velocity features: sliding-window counts, distinct counts, first-seen ages and timing regularity.

Every feature is defined once, in :mod:`woolguard.features.catalog`; the online engine, training and
backtesting all compute it through a :class:`~woolguard.features.state.FeatureState` backend
(in-process memory here, Redis in :mod:`woolguard.features.redis_state`).
"""

from woolguard.features.catalog import DEFAULT_WINDOWS, Window, WindowOp
from woolguard.features.state import FeatureState, MemoryState

__all__ = ["DEFAULT_WINDOWS", "FeatureState", "MemoryState", "Window", "WindowOp"]
