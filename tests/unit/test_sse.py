"""SSE lines end at \\n only: characters that str.splitlines breaks at stay in the chunk."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from runtime import _sse

# Every character str.splitlines (and httpx's aiter_lines) treats as a line end but
# JSON leaves unescaped inside a string.
ODD = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def test_lines_keep_unicode_separators_across_chunk_boundaries() -> None:
    chunk = {"choices": [{"delta": {"content": f"a{ODD}b"}}]}
    text = f"data: {json.dumps(chunk, ensure_ascii=False)}\r\n\r\ndata: [DONE]\n\n"

    async def pieces() -> AsyncIterator[str]:
        for i in range(0, len(text), 7):  # boundaries inside the JSON and the line ends
            yield text[i : i + 7]

    async def collect() -> list[str]:
        return [line async for line in _sse.lines(pieces())]

    lines = asyncio.run(collect())
    assert lines == [f"data: {json.dumps(chunk, ensure_ascii=False)}", "", "data: [DONE]", ""]
    assert json.loads(lines[0][6:]) == chunk
    assert str.splitlines(lines[0]) != [lines[0]]  # what the old code would have split


def test_data_of_one_event() -> None:
    event = f'data: {{"x": "{ODD}"}}\n\ndata:[DONE]\n\n'
    assert _sse.data(event) == [f'{{"x": "{ODD}"}}', "[DONE]"]


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
