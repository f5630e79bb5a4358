"""Server-sent events: lines end at ``\\n`` (``\\r\\n``) only.

``str.splitlines`` (and httpx's ``aiter_lines``, which follows it) also breaks at
U+2028, U+0085, ``\\x1c`` and others, which JSON leaves unescaped inside strings: a
model that generates one would cut its chunk in two and break the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def lines(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    """The lines of a text stream (decoded chunks of any size), without their ends."""
    buffer = ""
    async for text in texts:
        buffer += text
        *complete, buffer = buffer.split("\n")
        for line in complete:
            yield line.removesuffix("\r")
    if buffer:
        yield buffer.removesuffix("\r")


def data(event: str) -> list[str]:
    """The ``data:`` payloads of one SSE text."""
    return [
        line.removesuffix("\r")[len("data:") :].removeprefix(" ")
        for line in event.split("\n")
        if line.startswith("data:")
    ]
