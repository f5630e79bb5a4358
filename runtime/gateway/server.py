"""The gateway deployment: the Serve ingress in front of the LLMs and the agents.

Every route but ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <key>``.
The key's tenant is the tenant of every agent call (the caller cannot choose it);
its scopes decide which models and agents it may call (403 otherwise).

    GET  /healthz, /readyz
    GET  /v1/models                                the models this key may use
    POST /v1/chat/completions, /v1/completions     OpenAI-compatible, SSE with "stream"
    GET  /v1/agents                                the agents this key may use
    ...  /v1/agents/{agent}/sessions[/{id}[/invoke|/stream|/history|/cancel]]

LLM routes answer OpenAI-style errors; agent routes the agents' error bodies (both
``{"error": {"type", "message", ...}}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from runtime.agents.errors import (
    AgentError,
    AgentNotFoundError,
    InvalidInputError,
    PermissionDeniedError,
)
from runtime.agents.protocol import Message, RunEvent, RunResult, SessionInfo
from runtime.config.gateway import GatewayAppConfig, ModelRoute
from runtime.gateway.auth import AuthError, KeyStore, Principal
from runtime.llm.errors import LLMError

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="agent-runtime gateway",
    description="OpenAI-compatible LLM routes and agent sessions, per tenant.",
    version="0.1.0",
)


def _error(status: int, message: str, type: str, param: str | None = None) -> JSONResponse:
    """One error body for every route: OpenAI's fields plus `status` (the SDK's)."""
    body = {"message": message, "type": type, "param": param, "code": status, "status": status}
    return JSONResponse({"error": body}, status_code=status)


def _agent_error(err: AgentError) -> JSONResponse:
    return _error(err.status, err.message, err.type)


@app.exception_handler(AuthError)
async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
    kind = "authentication_error" if exc.status == 401 else "permission_error"
    response = _error(exc.status, exc.message, kind)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@app.exception_handler(AgentError)
async def _agent_error_handler(request: Request, exc: AgentError) -> JSONResponse:
    return _agent_error(exc)


@app.exception_handler(LLMError)
async def _llm_error(request: Request, exc: LLMError) -> JSONResponse:
    return _error(exc.status_code, exc.message, exc.type, exc.param)


@app.exception_handler(RequestValidationError)
async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return _agent_error(InvalidInputError(f"{where}: {first['msg']}"))


def _principal(request: Request) -> Principal:
    gateway: Gateway = request.app.state.gateway
    return gateway.keys.authenticate(request.headers.get("authorization"))


Caller = Annotated[Principal, Depends(_principal)]


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise LLMError(f"the request body is over {limit} bytes", status_code=413,
                       type="RequestTooLarge")  # fmt: skip
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise LLMError(f"the request body is over {limit} bytes", status_code=413,
                           type="RequestTooLarge")  # fmt: skip
    try:
        body = json.loads(raw)
    except ValueError:
        raise LLMError("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise LLMError("the request body must be a JSON object")
    return body


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _agent_sse(event: RunEvent) -> str:
    return f"event: {event.type}\ndata: {event.model_dump_json(exclude_none=True)}\n\n"


async def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    return bool(length and length != "0") or "chunked" in request.headers.get(
        "transfer-encoding", ""
    )


def _unavailable(route: ModelRoute, exc: BaseException) -> LLMError:
    return LLMError(
        f"the model `{route.name}` is unavailable now ({type(exc).__name__}); retry later",
        status_code=503,
        type="ServiceUnavailableError",
    )


def _plain_llm_error(err: LLMError) -> LLMError:
    """Ray re-raises remote errors as subclasses; answer with the plain error.

    (Helpers of the ingress class are defined above it: Serve serializes the class
    when it is decorated, before the rest of the module exists.)
    """
    return LLMError(err.message, err.status_code, err.type, err.param)


@serve.deployment(name="Gateway")
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
        self.keys = KeyStore(self.config.auth)
        if not len(self.keys):
            logger.warning("the gateway has no API keys: every authenticated route answers 401")
        self._models: dict[str, ModelRoute] = {m.name: m for m in self.config.models}
        self._agent_apps: dict[str, str] = {}  # agent -> application, filled on demand
        app.state.gateway = self

    # -- health --------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(self) -> JSONResponse:
        checks: dict[str, bool] = {}

        async def probe(name: str, call: Any) -> None:
            try:
                await asyncio.wait_for(call, timeout=2)
                checks[name] = True
            except Exception:
                checks[name] = False

        calls = [
            probe(f"model:{m.name}",
                  serve.get_deployment_handle(m.deployment, app_name=m.app).models.remote())
            for m in self.config.models
        ] + [
            probe(f"agents:{a}", serve.get_app_handle(a).agents.remote())
            for a in self.config.agent_apps
        ]  # fmt: skip
        await asyncio.gather(*calls)
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    # -- LLM routes ------------------------------------------------------------------

    def _model(self, caller: Principal, body: dict[str, Any]) -> ModelRoute:
        name = body.get("model")
        if not isinstance(name, str):
            raise LLMError("`model` is required", param="model")
        route = self._models.get(name)
        if route is None:
            raise LLMError(f"the model `{name}` does not exist", status_code=404,
                           type="NotFoundError", param="model")  # fmt: skip
        if not caller.scopes.allows_model(name):
            raise AuthError(403, f"this API key may not use the model `{name}`")
        return route

    @app.get("/v1/models")
    async def list_models(self, caller: Caller) -> dict[str, Any]:
        data = [
            {"id": m.name, "object": "model", "owned_by": "agent-runtime"}
            for m in self.config.models
            if caller.scopes.allows_model(m.name)
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request, caller: Caller) -> Response:
        return await self._complete(request, caller, "chat", "chat_stream")

    @app.post("/v1/completions")
    async def completions(self, request: Request, caller: Caller) -> Response:
        return await self._complete(request, caller, "completions", "completions_stream")

    async def _complete(self, request: Request, caller: Principal, method: str,
                        stream_method: str) -> Response:  # fmt: skip
        body = await _json_body(request, self.config.max_body_bytes)
        route = self._model(caller, body)
        handle = serve.get_deployment_handle(route.deployment, app_name=route.app)
        if not body.get("stream"):
            try:
                reply = await getattr(handle, method).remote(body)
            except LLMError as err:
                raise _plain_llm_error(err) from None
            except Exception as exc:  # no replica, replica died, back-pressure
                raise _unavailable(route, exc) from None
            return JSONResponse(reply)
        stream = getattr(handle.options(stream=True), stream_method).remote(body)
        try:  # the first chunk before the response: a bad request is a 4xx status
            first = await anext(stream.__aiter__())
        except StopAsyncIteration:
            first = None
        except LLMError as err:
            raise _plain_llm_error(err) from None
        except Exception as exc:
            raise _unavailable(route, exc) from None

        async def events() -> AsyncIterator[str]:
            done = False
            try:
                if first is not None:
                    yield _sse(first)
                    async for chunk in stream:
                        yield _sse(chunk)
                done = True
            except LLMError as err:
                done = True
                yield _sse(_plain_llm_error(err).to_body())
            finally:
                if not done:
                    stream.cancel()  # the client went away: stop generating
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # -- agent routes ----------------------------------------------------------------

    async def _agent_handle(self, caller: Principal, agent: str) -> Any:
        if not caller.scopes.allows_agent(agent):
            raise PermissionDeniedError(f"this API key may not use the agent `{agent}`")
        if agent not in self._agent_apps:
            for name in self.config.agent_apps:
                try:
                    for hosted in await serve.get_app_handle(name).agents.remote():
                        self._agent_apps[hosted] = name
                except Exception as exc:
                    logger.warning("agent app %s did not answer: %s", name, type(exc).__name__)
        app_name = self._agent_apps.get(agent)
        if app_name is None:
            raise AgentNotFoundError(f"no agent named {agent!r}")
        return serve.get_app_handle(app_name)

    async def _agent_call(self, caller: Principal, agent: str, method: str, *args: Any) -> Any:
        handle = await self._agent_handle(caller, agent)
        try:
            return await getattr(handle, method).remote(caller.tenant, agent, *args)
        except Exception as exc:
            raise AgentError.from_remote(exc) from None

    @app.get("/v1/agents")
    @app.get("/v1/agents/", include_in_schema=False)
    async def list_agents(self, caller: Caller) -> dict[str, list[str]]:
        names: list[str] = []
        for name in self.config.agent_apps:
            try:
                names += await serve.get_app_handle(name).agents.remote()
            except Exception as exc:
                logger.warning("agent app %s did not answer: %s", name, type(exc).__name__)
        return {"agents": [n for n in names if caller.scopes.allows_agent(n)]}

    @app.post("/v1/agents/{agent}/sessions", status_code=201)
    async def create_session(self, agent: str, request: Request, caller: Caller) -> SessionInfo:
        body = await _json_body(request, self.config.max_body_bytes) if await _has_body(
            request) else {}  # fmt: skip
        unknown = set(body) - {"id"}
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        info: SessionInfo = await self._agent_call(caller, agent, "create_session", body.get("id"))
        return info

    @app.get("/v1/agents/{agent}/sessions/{session_id}")
    async def get_session(self, agent: str, session_id: str, caller: Caller) -> SessionInfo:
        info: SessionInfo = await self._agent_call(caller, agent, "get_session", session_id)
        return info

    @app.delete("/v1/agents/{agent}/sessions/{session_id}", status_code=204)
    async def delete_session(self, agent: str, session_id: str, caller: Caller) -> Response:
        await self._agent_call(caller, agent, "delete_session", session_id)
        return Response(status_code=204)

    @app.get("/v1/agents/{agent}/sessions/{session_id}/history")
    async def history(self, agent: str, session_id: str, caller: Caller) -> dict[str, Any]:
        messages: list[Message] = await self._agent_call(caller, agent, "history", session_id)
        return {"messages": [m.model_dump() for m in messages]}

    @app.post("/v1/agents/{agent}/sessions/{session_id}/cancel")
    async def cancel(self, agent: str, session_id: str, caller: Caller) -> dict[str, bool]:
        return {"cancelled": bool(await self._agent_call(caller, agent, "cancel", session_id))}

    async def _message(self, request: Request) -> str:
        body = await _json_body(request, self.config.max_body_bytes)
        unknown = set(body) - {"message"}
        if unknown:
            raise InvalidInputError(f"unknown field(s): {', '.join(sorted(unknown))}")
        message = body.get("message")
        if not isinstance(message, str):
            raise InvalidInputError("message: a string is required")
        return message

    @app.post("/v1/agents/{agent}/sessions/{session_id}/invoke")
    async def invoke(
        self, agent: str, session_id: str, request: Request, caller: Caller
    ) -> RunResult:
        message = await self._message(request)
        result: RunResult = await self._agent_call(caller, agent, "invoke", session_id, message)
        return result

    @app.post(
        "/v1/agents/{agent}/sessions/{session_id}/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        self, agent: str, session_id: str, request: Request, caller: Caller
    ) -> StreamingResponse:
        message = await self._message(request)
        handle = await self._agent_handle(caller, agent)
        events = handle.options(stream=True).stream.remote(
            caller.tenant, agent, session_id, message
        )
        iterator = events.__aiter__()
        try:  # the start event before the response: a busy or missing session is a 4xx
            first = await anext(iterator)
        except Exception as exc:
            raise AgentError.from_remote(exc) from None

        async def frames() -> AsyncIterator[str]:
            done = False
            try:
                yield _agent_sse(first)
                async for event in iterator:
                    yield _agent_sse(event)
                done = True
            finally:
                if not done:
                    events.cancel()  # the client went away: the run is cancelled

        return StreamingResponse(
            frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
