"""The gateway's admission of a request (runtime/gateway/admission.py): how its body is
read, and what a streamed answer holds until it ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest


def test_a_stream_the_client_left_before_its_first_byte_frees_what_it_held() -> None:
    """The client is gone before the response starts (sending fails): the body never
    starts, so a slot freed in its `finally` (as before) stayed taken; HeldStream frees
    it whatever happens."""
    from runtime.gateway.admission import HeldStream

    freed: list[str] = []

    async def body() -> AsyncIterator[str]:
        try:
            yield "data: x\n\n"
        finally:
            freed.append("by the body")

    async def cleanup() -> None:
        freed.append("by the response")

    async def receive() -> dict[str, str]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        raise OSError("the client went away")

    async def main() -> None:
        response = HeldStream(body(), cleanup, media_type="text/event-stream")
        scope = {"type": "http", "asgi": {"spec_version": "2.4"}, "method": "POST"}
        # How Starlette reports the failed send is not the point: what was freed is.
        with contextlib.suppress(Exception):
            await response(scope, receive, send)

    asyncio.run(main())
    assert freed == ["by the response"]


def test_a_body_trickled_slowly_is_408_not_a_handler_held_forever() -> None:
    """A client sending a byte every half second: the body's deadline ends the read."""
    from starlette.requests import Request

    from runtime.errors import RequestTimeoutError
    from runtime.gateway.admission import json_body

    async def receive() -> dict[str, object]:
        await asyncio.sleep(0.5)
        return {"type": "http.request", "body": b" ", "more_body": True}

    async def main() -> None:
        scope = {"type": "http", "method": "POST", "headers": [], "path": "/"}
        async with asyncio.timeout(10):  # a hang guard, not a speed goal
            await json_body(Request(scope, receive), 1 << 20, timeout_s=1.0)

    with pytest.raises(RequestTimeoutError) as err:
        asyncio.run(main())
    assert err.value.status == 408
