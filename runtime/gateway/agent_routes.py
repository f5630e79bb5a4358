"""The gateway's agent routes: sessions and turns of the agents of ``agent_apps``.

    GET    /v1/agents                                   the agents this key may use
    POST   /v1/agents/{agent}/sessions                  201, {"id"} optional
    GET    /v1/agents/{agent}/sessions/{id}
    DELETE /v1/agents/{agent}/sessions/{id}             204
    GET    /v1/agents/{agent}/sessions/{id}/history
    POST   /v1/agents/{agent}/sessions/{id}/cancel
    POST   /v1/agents/{agent}/sessions/{id}/invoke      {"message"}: the run's result
    POST   /v1/agents/{agent}/sessions/{id}/stream      {"message"}: its events, SSE

``invoke`` and ``stream`` take an optional ``Idempotency-Key`` header: a turn sent
again with the key is answered by its first run (runtime/agents/runs.py).

Each calls the agent application by handle, with the caller's tenant as the first
argument (the caller cannot choose it). A stream's ``start`` event is received before
the response starts (a busy or missing session is a 4xx); a client that goes away
cancels the run.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from runtime import _sse
from runtime.agents.protocol import RunEvent, RunResult, SessionInfo
from runtime.errors import (
    AgentNotFoundError,
    APIError,
    InvalidInputError,
    PermissionDeniedError,
    quote,
)
from runtime.gateway.admission import Caller, HeldStream, has_body, json_body, only_fields
from runtime.gateway.auth import Principal
from runtime.gateway.protocol import (
    ERRORS,
    AgentList,
    AgentMessage,
    Cancelled,
    History,
    NewSession,
    request_body,
)
from runtime.routing.targets import Handles

logger = logging.getLogger("ray.serve")

routes = APIRouter(prefix="/v1/agents", responses=ERRORS)
SESSION = "/{agent}/sessions/{session_id}"


class AgentDirectory:
    """Which agent application hosts each agent (asked once per agent, on demand)."""

    def __init__(self, apps: list[str], handles: Handles) -> None:
        self.apps = apps
        self._handles = handles
        self._by_agent: dict[str, str] = {}

    async def hosted(self, app: str) -> list[str]:
        try:
            names: list[str] = await self._handles.app(app).agents.remote()
        except Exception as exc:
            logger.warning("agent app %s did not answer: %s", app, type(exc).__name__)
            return []
        for name in names:
            self._by_agent[name] = app
        return names

    async def all(self) -> list[str]:
        return [name for app in self.apps for name in await self.hosted(app)]

    async def handle(self, caller: Principal, agent: str) -> Any:
        """The handle of the application hosting ``agent``, if the caller may use it."""
        if not caller.scopes.allows_agent(agent):
            raise PermissionDeniedError(f"this API key may not use the agent {quote(agent)}")
        if agent not in self._by_agent:
            await self.all()
        app = self._by_agent.get(agent)
        if app is None:
            raise AgentNotFoundError(f"no agent named {quote(agent)}")
        return self._handles.app(app)


def _gateway(request: Request) -> Any:
    return request.app.state.gateway


async def _call(request: Request, caller: Principal, agent: str, method: str, *args: Any) -> Any:
    gateway = _gateway(request)
    handle = await gateway.agents.handle(caller, agent)
    gateway.limiter.acquire(caller.tenant)
    try:
        return await getattr(handle, method).remote(caller.tenant, agent, *args)
    except Exception as exc:
        raise APIError.from_remote(exc) from None
    finally:
        gateway.limiter.release(caller.tenant)


@routes.get("")
@routes.get("/", include_in_schema=False)
async def list_agents(request: Request, caller: Caller) -> AgentList:
    names = await _gateway(request).agents.all()
    return AgentList(agents=[n for n in names if caller.scopes.allows_agent(n)])


@routes.post(
    "/{agent}/sessions",
    status_code=201,
    openapi_extra=request_body(NewSession, required=False),
)
async def create_session(agent: str, request: Request, caller: Caller) -> SessionInfo:
    config = _gateway(request).config
    body = (
        await json_body(request, config.max_body_bytes, config.body_timeout_s)
        if has_body(request)
        else {}
    )
    only_fields(body, {"id"})
    info: SessionInfo = await _call(request, caller, agent, "create_session", body.get("id"))
    return info


@routes.get(SESSION)
async def get_session(agent: str, session_id: str, request: Request, caller: Caller) -> SessionInfo:
    info: SessionInfo = await _call(request, caller, agent, "get_session", session_id)
    return info


@routes.delete(SESSION, status_code=204)
async def delete_session(agent: str, session_id: str, request: Request, caller: Caller) -> Response:
    await _call(request, caller, agent, "delete_session", session_id)
    return Response(status_code=204)


@routes.get(SESSION + "/history")
async def history(agent: str, session_id: str, request: Request, caller: Caller) -> History:
    return History(messages=await _call(request, caller, agent, "history", session_id))


@routes.post(SESSION + "/cancel")
async def cancel(agent: str, session_id: str, request: Request, caller: Caller) -> Cancelled:
    return Cancelled(cancelled=bool(await _call(request, caller, agent, "cancel", session_id)))


async def _message(request: Request) -> str:
    config = _gateway(request).config
    body = await json_body(request, config.max_body_bytes, config.body_timeout_s)
    only_fields(body, {"message"})
    message = body.get("message")
    if not isinstance(message, str):
        raise InvalidInputError("message: a string is required")
    return message


def _idempotency_key(request: Request) -> str | None:
    """The client's ``Idempotency-Key`` (the agents check its shape: 400 if bad)."""
    return request.headers.get("idempotency-key")


@routes.post(SESSION + "/invoke", openapi_extra=request_body(AgentMessage))
async def invoke(agent: str, session_id: str, request: Request, caller: Caller) -> RunResult:
    message, key = await _message(request), _idempotency_key(request)
    result: RunResult = await _call(request, caller, agent, "invoke", session_id, message, key)
    return result


@routes.post(
    SESSION + "/stream",
    openapi_extra=request_body(AgentMessage),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(agent: str, session_id: str, request: Request, caller: Caller) -> Response:
    message, key = await _message(request), _idempotency_key(request)
    gateway = _gateway(request)
    handle = await gateway.agents.handle(caller, agent)
    gateway.limiter.acquire(caller.tenant)  # held until the stream ends
    events = handle.options(stream=True).stream.remote(
        caller.tenant, agent, session_id, message, key
    )
    iterator = events.__aiter__()
    try:  # the start event before the response: a busy or missing session is a 4xx
        first = await anext(iterator)
    except BaseException as exc:
        gateway.limiter.release(caller.tenant)
        if isinstance(exc, Exception):
            raise APIError.from_remote(exc) from None
        raise

    done = False

    async def frames() -> AsyncIterator[str]:
        nonlocal done
        yield _frame(first)
        async for event in iterator:
            yield _frame(event)
        done = True

    async def cleanup() -> None:
        gateway.limiter.release(caller.tenant)
        if not done:
            events.cancel()  # the client went away: the run is cancelled

    return HeldStream(
        frames(), cleanup, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


def _frame(event: RunEvent) -> str:
    return _sse.event(event.type, event.model_dump_json(exclude_none=True))
