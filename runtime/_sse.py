"""Server-sent events, both ways: encoding the gateway's streams, parsing the
streams of providers, of vLLM's layer and of the gateway (the SDK).

Lines end at ``\\n`` (``\\r\\n``) only. ``str.splitlines`` (and httpx's
``aiter_lines``, which follows it, and so ``httpx-sse``) also breaks at U+2028,
U+0085, ``\\x1c`` and others, which JSON leaves unescaped inside strings: a model
that generates one would cut its chunk in two and break the stream. That is why
this module parses the lines itself rather than using ``httpx-sse``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

#: The last event of an OpenAI stream.
DONE = "data: [DONE]\n\n"


def encode(data: Any) -> str:
    """One ``data:`` event of a JSON value (compact: no spaces)."""
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def event(type: str, data_json: str) -> str:
    """One named event whose data is JSON text already."""
    return f"event: {type}\ndata: {data_json}\n\n"


def forwardable(event: str) -> bool:
    """Whether the gateway may send a chunk event from the model's replica on as it is:
    one JSON ``data:`` event, ASCII only, and neither an error nor one with usage (the
    gateway reads those).

    ASCII only: the gateway's own events escape every other character (``encode``), so
    a client that splits lines at U+2028 and the like (above) reads them whole; an event
    that has one is decoded and encoded again. In JSON text a quote inside a string is
    escaped, so ``"usage"`` and ``"error"`` with their quotes occur only as keys; an
    event that has one anyway is decoded, which is always right.
    """
    return (
        event.startswith("data: {")
        and event.endswith("}\n\n")
        and event.count("\n") == 2  # one event
        and event.isascii()
        and '"usage"' not in event
        and '"error"' not in event
    )


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


async def payloads(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    """The data of each event of a text stream (its ``data:`` lines joined by ``\\n``);
    an event ends at a blank line, or at the end of the stream."""
    data: list[str] = []
    async for line in lines(texts):
        if line.startswith("data:"):
            data.append(line[len("data:") :].removeprefix(" "))
        elif not line and data:
            yield "\n".join(data)
            data = []
    if data:
        yield "\n".join(data)


def data(event: str) -> list[str]:
    """The ``data:`` payloads of one SSE text."""
    return [
        line.removesuffix("\r")[len("data:") :].removeprefix(" ")
        for line in event.split("\n")
        if line.startswith("data:")
    ]
