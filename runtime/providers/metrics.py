"""External providers' metrics (Ray's export; labels: configured provider and model
names only).

    runtime_provider_attempts_total{provider, outcome}  ok, retryable, rejected (4xx),
                                                        circuit_open
    runtime_provider_retries_total{provider}            attempts after the first
    runtime_provider_circuit_state{provider}            (gauge) 0 closed, 1 half open, 2 open
    runtime_llm_fallbacks_total{failed, answered}       a model's call answered by a later
                                                        target of its fallback chain
"""

from __future__ import annotations

import functools
from typing import Any

from runtime._metrics import serve_metrics

CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}


class ProviderMetrics:
    def __init__(self, metrics: Any | None) -> None:
        self.enabled = metrics is not None
        if metrics is None:
            return
        self.attempts = metrics.Counter(
            "runtime_provider_attempts_total",
            "Attempts to call external LLM providers.",
            tag_keys=("provider", "outcome"),
        )
        self.retries = metrics.Counter(
            "runtime_provider_retries_total",
            "Provider attempts after the first of a call.",
            tag_keys=("provider",),
        )
        self.circuit = metrics.Gauge(
            "runtime_provider_circuit_state",
            "0 closed, 1 half open, 2 open.",
            tag_keys=("provider",),
        )
        self.fallbacks = metrics.Counter(
            "runtime_llm_fallbacks_total",
            "Calls answered by a later target of the chain.",
            tag_keys=("failed", "answered"),
        )

    def attempt(self, provider: str, outcome: str, number: int, circuit: str) -> None:
        if not self.enabled:
            return
        self.attempts.inc(tags={"provider": provider, "outcome": outcome})
        if number > 1:
            self.retries.inc(tags={"provider": provider})
        self.circuit.set(CIRCUIT.get(circuit, 0), tags={"provider": provider})

    def fallback(self, failed: str, answered: str) -> None:
        if self.enabled:
            self.fallbacks.inc(tags={"failed": failed, "answered": answered})


@functools.cache
def provider_metrics() -> ProviderMetrics:
    """One recorder per process (metrics are registered once)."""
    return ProviderMetrics(serve_metrics())
