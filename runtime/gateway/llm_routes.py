"""The gateway's OpenAI-compatible routes, on the LLM router.

    GET  /v1/models                                the models this key may use
    POST /v1/chat/completions, /v1/completions     SSE with "stream"

A stream's first chunk is received before the response starts, so that a bad request
or an unavailable model is an error status, not a broken stream; an error after it
is an error event, then ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from runtime import _sse, _streams
from runtime.context import CallContext
from runtime.errors import APIError, LLMError, PermissionDeniedError, quote
from runtime.gateway.admission import Caller, HeldStream, json_body
from runtime.gateway.auth import Principal
from runtime.gateway.protocol import (
    ERRORS,
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    request_body,
)
from runtime.providers.fallback import Method

routes = APIRouter()


def _gateway(request: Request) -> Any:
    return request.app.state.gateway


@routes.get("/v1/models", responses=ERRORS)
async def list_models(request: Request, caller: Caller) -> ModelList:
    models = _gateway(request).config.models
    cards = [
        ModelCard(id=m.name, owned_by=m.provider or "self-hosted")
        for m in models
        if caller.scopes.allows_model(m.name)
    ]
    return ModelList(data=cards)


@routes.post(
    "/v1/chat/completions", openapi_extra=request_body(ChatCompletionRequest), responses=ERRORS
)
async def chat_completions(request: Request, caller: Caller) -> Response:
    return await _complete(request, caller, "chat")


@routes.post("/v1/completions", openapi_extra=request_body(CompletionRequest), responses=ERRORS)
async def completions(request: Request, caller: Caller) -> Response:
    return await _complete(request, caller, "completions")


def _model(gateway: Any, caller: Principal, body: dict[str, Any]) -> str:
    name = body.get("model")
    if not isinstance(name, str):
        raise LLMError("`model` is required", param="model")
    # The key's scopes first: a key may not learn which models exist beyond its own.
    if not caller.scopes.allows_model(name):
        raise PermissionDeniedError(f"this API key may not use the model {quote(name)}")
    if name not in gateway.router:
        raise LLMError(f"the model {quote(name)} does not exist", 404, "NotFoundError", "model")
    return name


def _scenario(gateway: Any, request: Request) -> str:
    """A client's cost label: its `X-Scenario` header, one of the configured names."""
    name = request.headers.get("x-scenario")
    if name is None:
        return "direct"
    if name not in gateway.config.scenarios:
        known = ", ".join(gateway.config.scenarios) or "none are configured"
        raise LLMError(
            f"the X-Scenario header names no configured scenario ({known})", param="X-Scenario"
        )
    return name


async def _complete(request: Request, caller: Principal, method: Method) -> Response:
    gateway = _gateway(request)
    body = await json_body(request, gateway.config.max_body_bytes, gateway.config.body_timeout_s)
    _model(gateway, caller, body)
    ctx = CallContext(caller.tenant, "-", _scenario(gateway, request), caller.key_id)
    allowed = caller.scopes.allows_model  # a fallback, too, only to the key's models
    gateway.limiter.acquire(caller.tenant)  # released when the answer (or stream) ends

    def release() -> None:
        gateway.limiter.release(caller.tenant)

    if not body.get("stream"):
        try:
            reply = await gateway.router.call(
                ctx, method, body, admitted=True, charge_later=True, allowed=allowed
            )
        finally:
            release()
        return JSONResponse(reply)
    try:
        upstream = gateway.router.stream(
            ctx, method, body, admitted=True, allowed=allowed, frames=True
        )
        chunks = await opened(upstream)
    except BaseException:
        release()
        raise

    # Several tokens' events per message while the hops behind fall behind (a client
    # still gets one event per token): runtime._streams.coalesced.
    frames = _streams.coalesced(_frames(chunks))

    async def cleanup() -> None:
        try:  # all: `chunks` may never have started (the client left before it); the
            # response may end without closing its body (a send cancelled), and then the
            # pump would read on
            await frames.aclose()
            await chunks.aclose()  # type: ignore[attr-defined]
            await upstream.aclose()  # stop the model; its tokens are charged
        finally:
            release()

    return HeldStream(frames, cleanup, media_type="text/event-stream")


async def opened(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """``stream`` with its first item already received (its errors raised here)."""
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return _empty()

    async def items() -> AsyncIterator[Any]:
        try:
            yield first
            async for item in stream:
                yield item
        finally:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator

    return items()


async def _empty() -> AsyncIterator[Any]:
    return
    yield


async def _frames(chunks: AsyncIterator[Any]) -> AsyncIterator[str]:
    """SSE frames of a stream; an error after the first chunk is an error event (the
    response's cleanup closes the stream and frees the slot: HeldStream)."""
    try:
        async for chunk in chunks:  # a str: SSE text from the model's replica, as it is
            yield chunk if isinstance(chunk, str) else _sse.encode(chunk)
    except APIError as err:
        yield _sse.encode(LLMError(err.message, err.status, err.type, err.param).to_body())
    yield _sse.DONE
