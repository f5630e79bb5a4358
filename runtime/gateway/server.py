"""The gateway deployment: the Serve ingress in front of the LLMs and the agents.

Every route but ``/healthz``, ``/readyz`` and ``/openapi.json`` needs
``Authorization: Bearer <key>``. The key's tenant is the tenant of every call it makes
(the caller cannot choose it); its scopes decide which models and agents it may call
(403 otherwise). The routes: ``llm_routes`` (OpenAI's) and ``agent_routes``; what
every request passes first: ``admission``; errors: ``errors``; the span and request
metrics of each request: ``observe``. Swagger UI and ReDoc are off (they load their
scripts from a CDN, which a locked-down cluster cannot reach); the schema is served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from ray import serve

from runtime import names
from runtime.config.gateway import GatewayAppConfig
from runtime.gateway import agent_routes, errors, llm_routes
from runtime.gateway.agent_routes import AgentDirectory
from runtime.gateway.auth import Authenticator
from runtime.gateway.metrics import GatewayMetrics
from runtime.gateway.observe import Observe
from runtime.gateway.protocol import Health, Readiness
from runtime.routing import Limiter, LLMRouter
from runtime.routing.targets import Handles
from runtime.telemetry import logs

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="agent-runtime gateway",
    description="OpenAI-compatible LLM routes and agent sessions, per tenant.",
    version="0.1.0",
    docs_url=None,
    redoc_url=None,
)
app.add_middleware(Observe)
errors.install(app)
app.include_router(llm_routes.routes)
app.include_router(agent_routes.routes)


async def _answers(call: Awaitable[Any]) -> bool:
    """A readiness probe: did the call answer within 2 s?

    (Helpers of the ingress class are defined above it: Serve serializes the class
    when it is decorated, before the rest of the module exists.)
    """
    try:
        await asyncio.wait_for(call, timeout=2)
        return True
    except Exception:
        return False


#: How long a readiness answer is kept (Kubernetes probes every 5 s).
READY_CACHE_S = 2.0


@serve.deployment(name=names.GATEWAY_DEPLOYMENT)
@serve.ingress(app)
class Gateway:
    """The front door. Example (serve config)::

    - name: gateway
      route_prefix: /
      import_path: runtime.apps:build_gateway_app
      args: {models: [{name: smollm2-135m-instruct, app: llm}], agent_apps: [agents],
             auth: {local_key_env: RUNTIME_API_KEY}}
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = GatewayAppConfig.model_validate(config)
        logs.install(self.config.telemetry.redact_patterns)
        self.auth = Authenticator(self.config.auth)
        if not len(self.auth):
            logger.warning("the gateway has no API keys: every authenticated route answers 401")
        self.limiter = Limiter(self.config.rate_limits, self.config.providers)
        self.handles = Handles()
        self.router = LLMRouter(self.config, self.limiter, self.handles)
        self.agents = AgentDirectory(self.config.agent_apps, self.handles)
        self.metrics = GatewayMetrics()
        self._readiness: tuple[float, dict[str, Any]] | None = None  # (when, body)
        self._readiness_lock = asyncio.Lock()
        app.state.gateway = self

    @app.get("/healthz")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @app.get("/readyz", responses={503: {"model": Readiness}})
    async def readyz(self) -> JSONResponse:
        """Ready when every self-hosted model and every agent application answers
        (external providers do not decide this replica's readiness). The route needs no
        key, so its answer is kept READY_CACHE_S and one probe runs at a time: a flood
        of calls costs the model and agent replicas one probe each per interval."""
        async with self._readiness_lock:
            now = time.monotonic()
            if self._readiness is None or now - self._readiness[0] >= READY_CACHE_S:
                self._readiness = (now, await self._probe())
        body = self._readiness[1]
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def _probe(self) -> dict[str, Any]:
        probes: dict[str, Awaitable[Any]] = {
            f"model:{m.name}": self.handles.deployment(m.app, m.deployment).models.remote()
            for m in self.config.models
            if m.app is not None
        }
        for a in self.config.agent_apps:
            probes[f"agents:{a}"] = self.handles.app(a).agents.remote()
        checks = dict(
            zip(probes, await asyncio.gather(*map(_answers, probes.values())), strict=True)
        )
        return Readiness(ready=all(checks.values()), checks=checks).model_dump()
