"""The agent deployment: a Ray Serve replica hosting many sessions of an app's agents.

Reached by deployment handle only: from the gateway (``runtime.gateway``), which
serves the HTTP routes and sets the tenant from the caller's API key, and from the
SDK inside the cluster. Handle methods take the tenant as their first argument and
return the models of ``runtime.agents.protocol``; errors are
:class:`runtime.errors.AgentError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from runtime import names
from runtime.agents.protocol import Message, RunEvent, RunResult, SessionInfo
from runtime.agents.service import AgentService
from runtime.config.agents import AgentAppConfig
from runtime.telemetry import logs


@serve.deployment(name=names.AGENT_DEPLOYMENT)
class AgentServer:
    """Hosts every agent of one application; any replica serves any session.

    Example (a driver connected to the cluster; the SDK does this for you)::

        handle = serve.get_app_handle("agents")
        info = await handle.create_session.remote("default", "assistant")
        result = await handle.invoke.remote("default", "assistant", info.id, "Hi")
    """

    async def __init__(self, config: dict[str, Any], *companions: Any) -> None:  # type: ignore[misc]
        # `companions`: handles of deployments bound into this application (its own
        # LLMServer); agents reach them by name like any other deployment.
        app_config = AgentAppConfig.model_validate(config)
        logs.install(app_config.telemetry.redact_patterns)
        self._service = await AgentService.open(app_config)

    async def __del__(self) -> None:
        service = getattr(self, "_service", None)
        if service is not None:
            await service.close()

    # -- handle API ----------------------------------------------------------------

    def record_autoscaling_stats(self) -> dict[str, float]:
        """For ``runtime.autoscaling:AgentPolicy``: turns running and queued here."""
        from runtime import autoscaling

        running, queued = self._service.load()
        return {autoscaling.TURNS_RUNNING: float(running), autoscaling.TURNS_QUEUED: float(queued)}

    async def agents(self) -> list[str]:
        return self._service.agent_names()

    async def create_session(
        self, tenant: str, agent: str, session_id: str | None = None
    ) -> SessionInfo:
        return await self._service.create_session(tenant, agent, session_id)

    async def get_session(self, tenant: str, agent: str, session_id: str) -> SessionInfo:
        return await self._service.get_session(tenant, agent, session_id)

    async def delete_session(self, tenant: str, agent: str, session_id: str) -> None:
        await self._service.delete_session(tenant, agent, session_id)

    async def invoke(
        self, tenant: str, agent: str, session_id: str, text: str, key: str | None = None
    ) -> RunResult:
        return await self._service.invoke(tenant, agent, session_id, text, key)

    async def stream(
        self, tenant: str, agent: str, session_id: str, text: str, key: str | None = None
    ) -> AsyncIterator[RunEvent]:
        async for event in self._service.stream(tenant, agent, session_id, text, key):
            yield event

    async def history(self, tenant: str, agent: str, session_id: str) -> list[Message]:
        return await self._service.history(tenant, agent, session_id)

    async def cancel(self, tenant: str, agent: str, session_id: str) -> bool:
        return await self._service.cancel(tenant, agent, session_id)
