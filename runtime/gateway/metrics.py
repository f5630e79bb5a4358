"""The gateway's metrics, by tenant (Ray's metrics export: one scrape per node; Ray
prefixes the names with ``ray_``; docs/observability.md).

Labels are bounded: tenants and key ids come from the config (or a token's tenant
claim), routes are route templates (never a session id), models are configured names.
Serve adds its own ``application``, ``deployment`` and ``replica`` labels.

    runtime_gateway_requests_total{tenant, route, status}
    runtime_gateway_request_seconds{tenant, route}       (histogram, to the response start)
    runtime_gateway_rate_limited_total{tenant, limit}    limit: rate, concurrency
    runtime_gateway_auth_failures_total{status}

Tokens charged, usage and cost of LLM answers are the router's
(``runtime.routing.metering``).
"""

from __future__ import annotations

from ray.serve import metrics

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

    def request(self, tenant: str, route: str, status: int, seconds: float) -> None:
        self.requests.inc(tags={"tenant": tenant, "route": route, "status": str(status)})
        self.latency.observe(seconds, tags={"tenant": tenant, "route": route})

    def limited(self, tenant: str, limit: str) -> None:
        self.rate_limited.inc(tags={"tenant": tenant, "limit": limit})

    def auth_failed(self, status: int) -> None:
        self.auth_failures.inc(tags={"status": str(status)})
