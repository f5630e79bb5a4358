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
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, NamedTuple

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
from runtime.config.gateway import GatewayAppConfig
from runtime.gateway.auth import Authenticator, AuthError, Principal
from runtime.gateway.metrics import GatewayMetrics
from runtime.gateway.ratelimit import Limiter, LimiterUnavailableError, RateLimitedError
from runtime.gateway.router import Handles, Router, usage_of
from runtime.llm.errors import LLMError
from runtime.providers.fallback import Method
from runtime.telemetry import logs, tracing
from runtime.telemetry.redact import redact

logger = logging.getLogger("ray.serve")

app = FastAPI(
    title="agent-runtime gateway",
    description="OpenAI-compatible LLM routes and agent sessions, per tenant.",
    version="0.1.0",
)


def _json_request(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """The published request body of a route that reads its body itself."""
    return {
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}
    }


_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
        "content": {"type": "string"},
    },
}
_LLM_COMMON: dict[str, Any] = {
    "model": {"type": "string"},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "stream": {"type": "boolean"},
}
_CHAT_REQUEST = _json_request(
    {
        "type": "object",
        "required": ["model", "messages"],
        "description": "OpenAI's chat completion request; other OpenAI fields pass through.",
        "properties": {**_LLM_COMMON, "messages": {"type": "array", "items": _MESSAGE}},
    }
)
_COMPLETION_REQUEST = _json_request(
    {
        "type": "object",
        "required": ["model", "prompt"],
        "description": "OpenAI's completion request; other OpenAI fields pass through.",
        "properties": {**_LLM_COMMON, "prompt": {"type": "string"}},
    }
)
_AGENT_MESSAGE = _json_request(
    {
        "type": "object",
        "required": ["message"],
        "additionalProperties": False,
        "properties": {"message": {"type": "string", "minLength": 1}},
    }
)
_NEW_SESSION = _json_request(
    {
        "type": "object",
        "additionalProperties": False,
        "properties": {"id": {"type": "string", "description": "Optional; generated when absent."}},
    },
    required=False,
)


def _error(status: int, message: str, type: str, param: str | None = None) -> JSONResponse:
    """One error body for every route: OpenAI's fields plus `status` (the SDK's); the
    message redacted (an upstream error may quote a key)."""
    body = {
        "message": redact(message),
        "type": type,
        "param": param,
        "code": status,
        "status": status,
    }
    return JSONResponse({"error": body}, status_code=status)


def _agent_error(err: AgentError) -> JSONResponse:
    return _error(err.status, err.message, err.type)


class _Observe:
    """Counts every answered request by tenant, route template and status, in a
    ``gateway <method> <route>`` span (pure ASGI: streams and client hang-ups pass
    through; a stream's span ends with the stream)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        started = time.perf_counter()
        with tracing.span(
            "gateway.request",
            {"http.request.method": scope.get("method")},
            kind=tracing.SpanKind.SERVER,
        ) as span:

            async def observed_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    route = getattr(scope.get("route"), "path", "unmatched")
                    tenant = (scope.get("state") or {}).get("tenant", "-")
                    status = message["status"]
                    span.update_name(f"gateway {scope.get('method')} {route}")
                    span.set_attributes(
                        {
                            "http.route": route,
                            "runtime.tenant": tenant,
                            "http.response.status_code": status,
                        }
                    )
                    if status >= 500:
                        span.set_status(tracing.Status(tracing.StatusCode.ERROR))
                    # The app serving this request (Serve builds the replica's app from
                    # this module's one: the module's own `app` holds no gateway there).
                    owner = scope.get("app") or app
                    gateway = getattr(owner.state, "gateway", None)
                    if gateway is not None:
                        gateway.metrics.request(
                            tenant, route, status, time.perf_counter() - started
                        )
                await send(message)

            await self.inner(scope, receive, observed_send)


app.add_middleware(_Observe)


def _tenant(request: Request) -> str:
    return str(getattr(request.state, "tenant", "-"))


@app.exception_handler(AuthError)
async def _auth_error(request: Request, exc: AuthError) -> JSONResponse:
    request.app.state.gateway.metrics.auth_failed(exc.status)
    kind = "authentication_error" if exc.status == 401 else "permission_error"
    response = _error(exc.status, exc.message, kind)
    if exc.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@app.exception_handler(AgentError)
async def _agent_error_handler(request: Request, exc: AgentError) -> JSONResponse:
    response = _agent_error(exc)
    if exc.status == 503:
        response.headers["Retry-After"] = "1"
    return response


@app.exception_handler(LLMError)
async def _llm_error(request: Request, exc: LLMError) -> JSONResponse:
    response = _error(exc.status_code, exc.message, exc.type, exc.param)
    if exc.status_code == 503:
        response.headers["Retry-After"] = "1"
    return response


@app.exception_handler(RateLimitedError)
async def _rate_limited(request: Request, exc: RateLimitedError) -> JSONResponse:
    request.app.state.gateway.metrics.limited(_tenant(request), exc.limit)
    response = _error(429, exc.message, "rate_limit_error")
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


@app.exception_handler(LimiterUnavailableError)
async def _limiter_down(request: Request, exc: LimiterUnavailableError) -> JSONResponse:
    response = _error(503, str(exc), "unavailable")
    response.headers["Retry-After"] = "1"
    return response


@app.exception_handler(RequestValidationError)
async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    return _agent_error(InvalidInputError(f"{where}: {first['msg']}"))


#: Routes that spend LLM tokens: refused while the caller's tokens are spent.
_LLM_PATHS = ("/completions", "/invoke", "/stream")


async def _principal(request: Request) -> Principal:
    """Authenticate, then count the request against the key's and tenant's limits."""
    gateway: Gateway = request.app.state.gateway
    caller = await gateway.auth.authenticate(request.headers.get("authorization"))
    request.state.tenant = caller.tenant
    logs.bind_tenant(caller.tenant)  # this request's log records name the tenant
    uses_llm = request.url.path.endswith(_LLM_PATHS)
    await gateway.limiter.admit(caller.tenant, caller.key_id, uses_llm=uses_llm)
    return caller


Caller = Annotated[Principal, Depends(_principal)]


async def _json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise LLMError(
            f"the request body is over {limit} bytes", status_code=413, type="RequestTooLarge"
        )
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise LLMError(
                f"the request body is over {limit} bytes", status_code=413, type="RequestTooLarge"
            )
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


class _Labels(NamedTuple):
    """Who an LLM answer is counted for (usage and cost metrics)."""

    tenant: str
    agent: str
    scenario: str


def _with_usage(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask a stream for its usage (to charge its tokens); True if the client asked too.

    (Helpers of the ingress class are defined above it: Serve serializes the class
    when it is decorated, before the rest of the module exists.)
    """
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise LLMError("`stream_options` must be an object", param="stream_options")
    wanted = bool(options.get("include_usage"))
    return {**body, "stream_options": {**options, "include_usage": True}}, wanted


def _visible(chunk: dict[str, Any], usage_wanted: bool) -> dict[str, Any] | None:
    """The chunk as the client asked for it: without usage unless it asked."""
    if usage_wanted or not isinstance(chunk, dict) or "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None  # the usage-only last chunk
    return {k: v for k, v in chunk.items() if k != "usage"}


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
        logs.install(self.config.telemetry.redact_patterns)
        self._prices = {m.name: m.price for m in self.config.models if m.price is not None}
        self.auth = Authenticator(self.config.auth)
        if not len(self.auth):
            logger.warning("the gateway has no API keys: every authenticated route answers 401")
        self.limiter = Limiter(self.config.rate_limits, self.config.providers)
        self.handles = Handles()
        self.router = Router(self.config, self.limiter, self.handles)
        self.metrics = GatewayMetrics()
        self._tasks: set[asyncio.Task[None]] = set()
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
            probe(f"model:{m.name}", self.handles.deployment(m.app, m.deployment).models.remote())
            for m in self.config.models
            if m.app is not None  # external providers do not decide this replica's readiness
        ] + [
            probe(f"agents:{a}", self.handles.app(a).agents.remote())
            for a in self.config.agent_apps
        ]
        await asyncio.gather(*calls)
        ready = all(checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    # -- LLM routes ------------------------------------------------------------------

    def _model(self, caller: Principal, body: dict[str, Any]) -> str:
        name = body.get("model")
        if not isinstance(name, str):
            raise LLMError("`model` is required", param="model")
        if name not in self.router:
            raise LLMError(
                f"the model `{name}` does not exist",
                status_code=404,
                type="NotFoundError",
                param="model",
            )
        if not caller.scopes.allows_model(name):
            raise AuthError(403, f"this API key may not use the model `{name}`")
        return name

    @app.get("/v1/models")
    async def list_models(self, caller: Caller) -> dict[str, Any]:
        data = [
            {"id": m.name, "object": "model", "owned_by": m.provider or "self-hosted"}
            for m in self.config.models
            if caller.scopes.allows_model(m.name)
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", openapi_extra=_CHAT_REQUEST)
    async def chat_completions(self, request: Request, caller: Caller) -> Response:
        return await self._complete(request, caller, "chat")

    @app.post("/v1/completions", openapi_extra=_COMPLETION_REQUEST)
    async def completions(self, request: Request, caller: Caller) -> Response:
        return await self._complete(request, caller, "completions")

    def _scenario(self, request: Request) -> str:
        """A client's cost label: its `X-Scenario` header, one of the configured names."""
        name = request.headers.get("x-scenario")
        if name is None:
            return "direct"
        if name not in self.config.scenarios:
            known = ", ".join(self.config.scenarios) or "none are configured"
            raise LLMError(
                f"the X-Scenario header names no configured scenario ({known})", param="X-Scenario"
            )
        return name

    async def _complete(self, request: Request, caller: Principal, method: Method) -> Response:
        body = await _json_body(request, self.config.max_body_bytes)
        model = self._model(caller, body)
        labels = _Labels(caller.tenant, "-", self._scenario(request))
        self.limiter.acquire(caller.tenant)
        if not body.get("stream"):
            try:
                reply = await self.router.call(model, method, body)
            finally:
                self.limiter.release(caller.tenant)
            # Charged after the answer leaves (off the latency path; a Redis round trip).
            self._later(self._charge(labels, caller.key_id, reply.get("model"), usage_of(reply)))
            return JSONResponse(reply)
        try:
            events = await self._open_stream(labels, caller.key_id, model, method, body)
        except BaseException:
            self.limiter.release(caller.tenant)
            raise

        async def sse() -> AsyncIterator[str]:
            try:
                async for chunk in events:
                    yield "data: [DONE]\n\n" if chunk == "[DONE]" else _sse(chunk)
            finally:
                self.limiter.release(caller.tenant)

        return StreamingResponse(sse(), media_type="text/event-stream")

    async def _open_stream(
        self, labels: _Labels, key_id: str | None, model: str, method: Method, body: dict[str, Any]
    ) -> AsyncIterator[Any]:
        """The router's stream with its first chunk already received (a bad request or
        an unavailable model is an error status, not a broken stream); its tokens are
        charged when it ends. Yields chunks, an error body, or nothing more."""
        upstream, usage_wanted = _with_usage(body)
        stream: Any = self.router.stream(model, method, upstream)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            first = None

        async def chunks() -> AsyncIterator[Any]:
            usage, answered_by = None, None
            try:
                if first is not None:
                    usage = usage_of(first)
                    answered_by = first.get("model", model) if isinstance(first, dict) else model
                    if (visible := _visible(first, usage_wanted)) is not None:
                        yield visible
                    async for chunk in stream:
                        usage = usage_of(chunk) or usage
                        if (visible := _visible(chunk, usage_wanted)) is not None:
                            yield visible
            except LLMError as err:
                yield LLMError(err.message, err.status_code, err.type, err.param).to_body()
            finally:
                await stream.aclose()  # the client went away: the model stops generating
                await self._charge(labels, key_id, answered_by, usage)
            yield "[DONE]"

        return chunks()

    # -- the router for the agents (handle calls, tenant from the agent app) ------------

    async def llm(
        self,
        tenant: str,
        method: Method,
        body: dict[str, Any],
        agent: str = "-",
        scenario: str = "default",
    ) -> dict[str, Any]:
        """An agent's LLM call, through the same router and the tenant's token limits
        (``agent`` and ``scenario`` label its usage and cost)."""
        model = self._agent_model(body)
        logs.bind_tenant(tenant)
        await self._admit_tokens(tenant)
        reply = await self.router.call(model, method, body)
        await self._charge(
            _Labels(tenant, agent, scenario), None, reply.get("model"), usage_of(reply)
        )
        return reply

    def _later(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # a reference until it ends
        task.add_done_callback(self._tasks.discard)

    async def _charge(
        self, labels: _Labels, key_id: str | None, model: Any, usage: tuple[int, int] | None
    ) -> None:
        """Charge an answer's tokens to the tenant's limits; count its usage and cost.
        ``model`` is the model that answered (None: none did)."""
        tokens = sum(usage) if usage else 0
        await self.limiter.charge(labels.tenant, key_id, tokens)
        self.metrics.charged(labels.tenant, model, tokens)
        if model is not None:
            self.metrics.used(
                {**labels._asdict(), "model": str(model)},
                *(usage or (0, 0)),
                self._prices.get(str(model)),
            )

    async def llm_stream(
        self,
        tenant: str,
        method: Method,
        body: dict[str, Any],
        agent: str = "-",
        scenario: str = "default",
    ) -> AsyncIterator[dict[str, Any]]:
        model = self._agent_model(body)
        logs.bind_tenant(tenant)
        await self._admit_tokens(tenant)
        events = await self._open_stream(
            _Labels(tenant, agent, scenario), None, model, method, body
        )
        async for chunk in events:
            if chunk != "[DONE]":
                if isinstance(chunk, dict) and "error" in chunk:
                    raise LLMError.from_body(chunk)
                yield chunk

    async def _admit_tokens(self, tenant: str) -> None:
        try:
            await self.limiter.admit_tokens(tenant)
        except RateLimitedError as err:
            raise LLMError(err.message, status_code=429, type="rate_limit_error") from None

    def _agent_model(self, body: dict[str, Any]) -> str:
        name = body.get("model") if isinstance(body, dict) else None
        if not isinstance(name, str) or name not in self.router:
            raise LLMError(
                f"the model `{name}` is not routed by this gateway",
                status_code=404,
                type="NotFoundError",
                param="model",
            )
        return name

    # -- agent routes ----------------------------------------------------------------

    async def _agent_handle(self, caller: Principal, agent: str) -> Any:
        if not caller.scopes.allows_agent(agent):
            raise PermissionDeniedError(f"this API key may not use the agent `{agent}`")
        if agent not in self._agent_apps:
            for name in self.config.agent_apps:
                try:
                    for hosted in await self.handles.app(name).agents.remote():
                        self._agent_apps[hosted] = name
                except Exception as exc:
                    logger.warning("agent app %s did not answer: %s", name, type(exc).__name__)
        app_name = self._agent_apps.get(agent)
        if app_name is None:
            raise AgentNotFoundError(f"no agent named {agent!r}")
        return self.handles.app(app_name)

    async def _agent_call(self, caller: Principal, agent: str, method: str, *args: Any) -> Any:
        handle = await self._agent_handle(caller, agent)
        self.limiter.acquire(caller.tenant)
        try:
            return await getattr(handle, method).remote(caller.tenant, agent, *args)
        except Exception as exc:
            raise AgentError.from_remote(exc) from None
        finally:
            self.limiter.release(caller.tenant)

    @app.get("/v1/agents")
    @app.get("/v1/agents/", include_in_schema=False)
    async def list_agents(self, caller: Caller) -> dict[str, list[str]]:
        names: list[str] = []
        for name in self.config.agent_apps:
            try:
                names += await self.handles.app(name).agents.remote()
            except Exception as exc:
                logger.warning("agent app %s did not answer: %s", name, type(exc).__name__)
        return {"agents": [n for n in names if caller.scopes.allows_agent(n)]}

    @app.post("/v1/agents/{agent}/sessions", status_code=201, openapi_extra=_NEW_SESSION)
    async def create_session(self, agent: str, request: Request, caller: Caller) -> SessionInfo:
        body = (
            await _json_body(request, self.config.max_body_bytes)
            if await _has_body(request)
            else {}
        )
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

    @app.post("/v1/agents/{agent}/sessions/{session_id}/invoke", openapi_extra=_AGENT_MESSAGE)
    async def invoke(
        self, agent: str, session_id: str, request: Request, caller: Caller
    ) -> RunResult:
        message = await self._message(request)
        result: RunResult = await self._agent_call(caller, agent, "invoke", session_id, message)
        return result

    @app.post(
        "/v1/agents/{agent}/sessions/{session_id}/stream",
        openapi_extra=_AGENT_MESSAGE,
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def stream(
        self, agent: str, session_id: str, request: Request, caller: Caller
    ) -> StreamingResponse:
        message = await self._message(request)
        handle = await self._agent_handle(caller, agent)
        self.limiter.acquire(caller.tenant)  # held until the stream ends
        events = handle.options(stream=True).stream.remote(
            caller.tenant, agent, session_id, message
        )
        iterator = events.__aiter__()
        try:  # the start event before the response: a busy or missing session is a 4xx
            first = await anext(iterator)
        except BaseException as exc:
            self.limiter.release(caller.tenant)
            if isinstance(exc, Exception):
                raise AgentError.from_remote(exc) from None
            raise

        async def frames() -> AsyncIterator[str]:
            done = False
            try:
                yield _agent_sse(first)
                async for event in iterator:
                    yield _agent_sse(event)
                done = True
            finally:
                self.limiter.release(caller.tenant)
                if not done:
                    events.cancel()  # the client went away: the run is cancelled

        return StreamingResponse(
            frames(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
