"""The gateway's metrics, by tenant (Ray's metrics export: one scrape per node; Ray
prefixes the names with ``ray_``; docs/observability.md).

Labels are bounded: tenants and key ids come from the config (or a token's tenant
claim), routes are route templates (never a session id), models are configured names.
Serve adds its own ``application``, ``deployment`` and ``replica`` labels.

    runtime_gateway_requests_total{tenant, route, status}
    runtime_gateway_request_seconds{tenant, route}       (histogram, to the response start)
    runtime_gateway_rate_limited_total{tenant, limit}    limit: rate, concurrency
    runtime_gateway_auth_failures_total{status}
    runtime_gateway_llm_tokens_total{tenant, model}      prompt + completion, as charged

Usage and cost of every LLM answer through the gateway (clients' and agents' calls;
``agent`` is ``-`` for a client's own call, ``scenario`` its ``X-Scenario`` header or
``direct``, for an agent's its configured ``scenario``; ``model`` the model that
answered):

    runtime_usage_requests_total{tenant, agent, scenario, model}
    runtime_usage_tokens_total{tenant, agent, scenario, model, direction}  input, output
    runtime_cost_usd_total{tenant, agent, scenario, model}   models with a per-token price
"""

from __future__ import annotations

from typing import Any

from ray.serve import metrics

from runtime.config.telemetry import TokenPrice

_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]


class GatewayMetrics:
    def __init__(self) -> None:
        self.requests = metrics.Counter(
            "runtime_gateway_requests_total",
            "Requests answered by the gateway.",
            tag_keys=("tenant", "route", "status"),
        )
        self.latency = metrics.Histogram(
            "runtime_gateway_request_seconds",
            "Time to the start of the response.",
            boundaries=_BUCKETS,
            tag_keys=("tenant", "route"),
        )
        self.rate_limited = metrics.Counter(
            "runtime_gateway_rate_limited_total",
            "Requests refused by a limit (429).",
            tag_keys=("tenant", "limit"),
        )
        self.auth_failures = metrics.Counter(
            "runtime_gateway_auth_failures_total",
            "Requests refused by authentication.",
            tag_keys=("status",),
        )
        self.tokens = metrics.Counter(
            "runtime_gateway_llm_tokens_total",
            "LLM tokens charged to tenants.",
            tag_keys=("tenant", "model"),
        )

        self.usage_requests = metrics.Counter(
            "runtime_usage_requests_total",
            "LLM answers by tenant, agent, scenario, model.",
            tag_keys=("tenant", "agent", "scenario", "model"),
        )
        self.usage_tokens = metrics.Counter(
            "runtime_usage_tokens_total",
            "LLM tokens by tenant, agent, scenario, model.",
            tag_keys=("tenant", "agent", "scenario", "model", "direction"),
        )
        self.cost = metrics.Counter(
            "runtime_cost_usd_total",
            "Cost of LLM answers priced per token, in USD.",
            tag_keys=("tenant", "agent", "scenario", "model"),
        )

    def request(self, tenant: str, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"tenant": tenant, "route": route, "status": str(status)})
        self.latency.observe(seconds, tags={"tenant": tenant, "route": route})

    def limited(self, tenant: str, limit: str) -> None:
        self.rate_limited.inc(tags={"tenant": tenant, "limit": limit})

    def auth_failed(self, status: int) -> None:
        self.auth_failures.inc(tags={"status": str(status)})

    def charged(self, tenant: str, model: Any, tokens: int) -> None:
        if tokens > 0:
            self.tokens.inc(tokens, tags={"tenant": tenant, "model": str(model)})

    def used(
        self,
        labels: dict[str, str],
        input_tokens: int,
        output_tokens: int,
        price: TokenPrice | None,
    ) -> None:
        """One answer: ``labels`` are tenant, agent, scenario and model."""
        self.usage_requests.inc(tags=labels)
        for direction, count in (("input", input_tokens), ("output", output_tokens)):
            if count > 0:
                self.usage_tokens.inc(count, tags={**labels, "direction": direction})
        if price is not None:
            cost = (
                input_tokens * price.input_per_million + output_tokens * price.output_per_million
            ) / 1e6
            if cost > 0:
                self.cost.inc(cost, tags=labels)
