"""Metrics through Ray's export (one scrape per node), only inside Serve replicas."""

from __future__ import annotations

from typing import Any

#: Histogram bounds for durations in seconds, from a fast handle call to a long turn.
SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


def serve_metrics() -> Any | None:
    """``ray.serve.metrics`` in a Serve replica (it adds the replica's labels); None
    elsewhere (unit tests, scripts), where recorders do nothing."""
    try:
        from ray.serve import metrics
        from ray.serve.context import _get_internal_replica_context

        return metrics if _get_internal_replica_context() is not None else None
    except Exception:  # no Ray, or not in Serve
        return None
