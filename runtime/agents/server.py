"""The agent deployment: a Ray Serve replica hosting many sessions of an app's agents.

HTTP (FastAPI ingress, under the application's route prefix, e.g. ``/v1/agents``)::

    GET    /                                   the agents of this application
    POST   /{agent}/sessions                   create a session ({"id": optional})
    GET    /{agent}/sessions/{id}              the session
    DELETE /{agent}/sessions/{id}              delete it and its checkpoints
    POST   /{agent}/sessions/{id}/invoke       run a turn ({"message"}); the RunResult
    POST   /{agent}/sessions/{id}/stream       run a turn; its RunEvents as SSE
    GET    /{agent}/sessions/{id}/history      the conversation
    POST   /{agent}/sessions/{id}/cancel       cancel the running turn

The tenant of every call is the ``X-Runtime-Tenant`` header (``default`` when
absent). The gateway sets it from the caller's credentials and strips what the
client sent; without the gateway in front, whoever reaches this route chooses
the tenant, so the agent routes must not face untrusted clients directly.

Handle methods take the tenant as their first argument and return the models of
``runtime.agents.protocol``; errors are :class:`runtime.agents.errors.AgentError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from runtime.agents.errors import AgentError, InvalidInputError
from runtime.agents.protocol import (
    DEFAULT_TENANT,
    TENANT_HEADER,
    Message,
    RunEvent,
    RunResult,
    SessionInfo,
)
from runtime.agents.service import AgentService
from runtime.config.agents import AgentAppConfig

app = FastAPI(title="agent-runtime agents", docs_url=None, redoc_url=None)


class CreateSession(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, description="Your own id; a random one if absent.")


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(description="The user's message.")


class History(BaseModel):
    messages: list[Message]


Tenant = Annotated[str, Header(alias=TENANT_HEADER)]


@app.exception_handler(AgentError)
async def _agent_error(request: Request, exc: AgentError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status)


@app.exception_handler(RequestValidationError)
async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    err = InvalidInputError(f"{where}: {first['msg']}")  # never echoes the input value
    return JSONResponse(err.to_body(), status_code=err.status)


def _sse(event: RunEvent) -> str:
    return f"event: {event.type}\ndata: {event.model_dump_json(exclude_none=True)}\n\n"


@serve.deployment(name="AgentServer")
@serve.ingress(app)
class AgentServer:
    """Hosts every agent of one application; any replica serves any session.

    Example (a driver connected to the cluster; the SDK does this for you)::

        handle = serve.get_app_handle("agents")
        info = await handle.create_session.remote("default", "assistant")
        result = await handle.invoke.remote("default", "assistant", info.id, "Hi")
    """

    async def __init__(self, config: dict[str, Any]) -> None:  # type: ignore[misc]
        self._service = await AgentService.open(AgentAppConfig.model_validate(config))

    async def __del__(self) -> None:
        service = getattr(self, "_service", None)
        if service is not None:
            await service.close()

    # -- handle API ----------------------------------------------------------------

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

    async def invoke(self, tenant: str, agent: str, session_id: str, text: str) -> RunResult:
        return await self._service.invoke(tenant, agent, session_id, text)

    async def stream(
        self, tenant: str, agent: str, session_id: str, text: str
    ) -> AsyncIterator[RunEvent]:
        async for event in self._service.stream(tenant, agent, session_id, text):
            yield event

    async def history(self, tenant: str, agent: str, session_id: str) -> list[Message]:
        return await self._service.history(tenant, agent, session_id)

    async def cancel(self, tenant: str, agent: str, session_id: str) -> bool:
        return await self._service.cancel(tenant, agent, session_id)

    # -- HTTP ------------------------------------------------------------------------

    @app.get("/")
    async def http_agents(self) -> dict[str, list[str]]:
        return {"agents": self._service.agent_names()}

    @app.post("/{agent}/sessions", status_code=201)
    async def http_create(
        self, agent: str, body: CreateSession | None = None,
        tenant: Tenant = DEFAULT_TENANT,
    ) -> SessionInfo:  # fmt: skip
        return await self._service.create_session(tenant, agent, body.id if body else None)

    @app.get("/{agent}/sessions/{session_id}")
    async def http_get(
        self, agent: str, session_id: str, tenant: Tenant = DEFAULT_TENANT
    ) -> SessionInfo:
        return await self._service.get_session(tenant, agent, session_id)

    @app.delete("/{agent}/sessions/{session_id}", status_code=204)
    async def http_delete(
        self, agent: str, session_id: str, tenant: Tenant = DEFAULT_TENANT
    ) -> Response:
        await self._service.delete_session(tenant, agent, session_id)
        return Response(status_code=204)

    @app.post("/{agent}/sessions/{session_id}/invoke")
    async def http_invoke(
        self, agent: str, session_id: str, body: Turn, tenant: Tenant = DEFAULT_TENANT
    ) -> RunResult:
        return await self._service.invoke(tenant, agent, session_id, body.message)

    @app.post(
        "/{agent}/sessions/{session_id}/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def http_stream(
        self, agent: str, session_id: str, body: Turn, tenant: Tenant = DEFAULT_TENANT
    ) -> StreamingResponse:
        # Started before the response, so that a busy or missing session is a 4xx status.
        turn = await self._service.start(tenant, agent, session_id, body.message)

        async def events() -> AsyncIterator[str]:
            async for event in self._service.events(turn):
                yield _sse(event)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/{agent}/sessions/{session_id}/history")
    async def http_history(
        self, agent: str, session_id: str, tenant: Tenant = DEFAULT_TENANT
    ) -> History:
        return History(messages=await self._service.history(tenant, agent, session_id))

    @app.post("/{agent}/sessions/{session_id}/cancel")
    async def http_cancel(
        self, agent: str, session_id: str, tenant: Tenant = DEFAULT_TENANT
    ) -> dict[str, bool]:
        return {"cancelled": await self._service.cancel(tenant, agent, session_id)}
