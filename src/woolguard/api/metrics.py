"""Prometheus metrics of the decision service: decisions by outcome, latency, errors, dependency failures.

With several workers, ``woolguard serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder before the
workers start, and ``/metrics`` then adds up every worker's values.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

DECISIONS = Counter("woolguard_decisions_total", "Decisions made, by tenant, outcome and degradation",
                    ["tenant", "outcome", "degraded"])
DUPLICATES = Counter("woolguard_duplicate_events_total", "Retried events answered with their first decision",
                     ["tenant"])
LATENCY = Histogram("woolguard_decision_seconds", "Time to decide one event (server side)",
                    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
ERRORS = Counter("woolguard_errors_total", "Requests refused or failed, by kind", ["kind"])
DEPENDENCY_FAILURES = Counter("woolguard_dependency_failures_total",
                              "Calls to a dependency that failed or timed out", ["dependency"])
LOG_PENDING = Gauge("woolguard_decision_log_pending", "Decision-log rows not yet in the database",
                    multiprocess_mode="livesum")
POLICY_RELOADS = Counter("woolguard_policy_reloads_total", "Active policy changes picked up by a worker")


def render() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
