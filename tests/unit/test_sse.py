"""SSE lines end at \\n only: characters that str.splitlines breaks at stay in the chunk."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

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


def test_only_plain_ascii_chunks_are_forwarded_as_they_are() -> None:
    token = _sse.encode({"choices": [{"delta": {"content": "hi"}}]})
    assert _sse.forwardable(token)
    # The gateway reads these, or must escape them as its own events do.
    assert not _sse.forwardable(_sse.encode({"choices": [], "usage": {"prompt_tokens": 1}}))
    assert not _sse.forwardable(_sse.encode({"error": {"message": "engine died"}}))
    assert not _sse.forwardable(_sse.DONE)
    assert not _sse.forwardable(token + _sse.DONE)  # one event only
    raw = 'data: {"choices":[{"delta":{"content":"a\u2028b"}}]}\n\n'  # as vLLM writes it
    assert not _sse.forwardable(raw)
    # A model that writes the word with quotes is still forwarded: they are escaped.
    quoted = _sse.encode({"choices": [{"delta": {"content": '"usage" "error"'}}]})
    assert _sse.forwardable(quoted)
