"""Observation of every request: a ``gateway <method> <route>`` span, and the request
counter and latency by tenant, route template and status.

Pure ASGI, so that streams and client hang-ups pass through untouched; a stream's span
ends with the stream.
"""

from __future__ import annotations

import time
from typing import Any

from runtime.telemetry import tracing


class Observe:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        attributes = {"http.request.method": scope.get("method")}
        with tracing.span("gateway.request", attributes, kind=tracing.SpanKind.SERVER) as span:

            async def observed_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    _answered(scope, span, message["status"], time.perf_counter() - started)
                await send(message)

            await self.inner(scope, receive, observed_send)


def _answered(scope: Any, span: Any, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", "unmatched")
    tenant = (scope.get("state") or {}).get("tenant", "-")
    span.update_name(f"gateway {scope.get('method')} {route}")
    span.set_attributes(
        {"http.route": route, "runtime.tenant": tenant, "http.response.status_code": status}
    )
    if status >= 500:
        span.set_status(tracing.Status(tracing.StatusCode.ERROR))
    # The app serving this request holds the replica's gateway (Serve builds the
    # replica's app from the module's).
    gateway = getattr(getattr(scope.get("app"), "state", None), "gateway", None)
    if gateway is not None:
        gateway.metrics.request(tenant, route, status, seconds)
