"""What every authenticated request passes first: its key, its limits, its body.

``Caller`` (a FastAPI dependency) authenticates the request, binds its
:class:`~runtime.context.CallContext` (the tenant of everything it does here) and
counts it against the key's and the tenant's limits; routes that spend LLM tokens
are also refused while the tenant's or key's tokens are spent. Bodies are read with
a size limit before they are parsed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import StreamingResponse

from runtime import context
from runtime.context import CallContext
from runtime.errors import (
    InvalidInputError,
    LLMError,
    RequestTimeoutError,
    RequestTooLargeError,
    quote,
)
from runtime.gateway.auth import Principal

#: Routes that spend LLM tokens: refused while the caller's tokens are spent.
_LLM_PATHS = ("/completions", "/invoke", "/stream")


async def _principal(request: Request) -> Principal:
    gateway: Any = request.app.state.gateway
    caller: Principal = await gateway.auth.authenticate(request.headers.get("authorization"))
    request.state.tenant = caller.tenant
    context.bind(CallContext(tenant=caller.tenant, key_id=caller.key_id))
    uses_llm = request.url.path.endswith(_LLM_PATHS)
    await gateway.limiter.admit(caller.tenant, caller.key_id, uses_llm=uses_llm)
    return caller


Caller = Annotated[Principal, Depends(_principal)]


async def json_body(request: Request, limit: int, timeout_s: float = 30.0) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes (413 beyond) within
    ``timeout_s`` (408 beyond)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"the request body is over {limit} bytes")
    raw = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for part in request.stream():
                raw += part
                if len(raw) > limit:
                    raise RequestTooLargeError(f"the request body is over {limit} bytes")
    except TimeoutError:
        raise RequestTimeoutError(
            f"the request body did not arrive within {timeout_s:g} s"
        ) from None
    try:
        body = json.loads(raw)
    except ValueError:  # also invalid UTF-8 (UnicodeDecodeError)
        raise LLMError("the request body is not valid JSON") from None
    except RecursionError:  # nested deeper than the interpreter's stack
        raise LLMError("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise LLMError("the request body must be a JSON object")
    if _depth_over(body, MAX_DEPTH):
        raise LLMError(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return body


#: The deepest nesting of objects and arrays a body may have (a tool's JSON schema is
#: the deepest thing an OpenAI request holds; later steps recurse through bodies).
MAX_DEPTH = 64


def _depth_over(value: Any, limit: int) -> bool:
    """True if ``value`` nests objects and arrays deeper than ``limit`` (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def has_body(request: Request) -> bool:
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "")
    return bool(length and length != "0") or chunked


def only_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        names = sorted(unknown)
        shown = ", ".join(quote(n) for n in names[:5]) + (", …" if len(names) > 5 else "")
        raise InvalidInputError(f"unknown field(s): {shown}")


class HeldStream(StreamingResponse):
    """A streamed answer that holds something until it ends (a tenant's concurrency
    slot, an open upstream): ``cleanup`` runs once when the response ends, however it
    ends. The body's own ``finally`` is not enough: a client that leaves before the
    first byte is sent cancels the response before the body generator starts, and a
    generator that never started never runs its ``finally`` (the slot leaked)."""

    def __init__(self, content: Any, cleanup: Callable[[], Awaitable[None]], **kwargs: Any):
        super().__init__(content, **kwargs)
        self._cleanup = cleanup
        self._cleaned = False

    async def cleanup(self) -> None:
        if not self._cleaned:
            self._cleaned = True
            await self._cleanup()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await asyncio.shield(self.cleanup())
