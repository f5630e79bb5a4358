"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import itertools
import socket
import time
from typing import Any

#: The benchmarks' prompts, used in turn.
PROMPTS = [
    "What is the capital of France?",
    "Explain what a GPU does in one paragraph.",
    "Write a short poem about the sea.",
    "List three uses of a hash table.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What is the difference between a process and a thread?",
    "Summarize the plot of Romeo and Juliet.",
]

#: Rate limits that are counted on every request but never reached: their bookkeeping
#: is on the measured path, their refusals are not.
UNREACHED_LIMITS = {
    "per_tenant": {
        "requests_per_minute": 1_000_000,
        "tokens_per_minute": 100_000_000,
        "concurrency": 1000,
    },
    "per_key": {"requests_per_minute": 1_000_000},
}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nearest_rank(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated between ranks (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def stream_chat(client: Any, model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    """One streamed chat answer of exactly ``max_tokens`` tokens (``ignore_eos``) through
    the ``openai.AsyncOpenAI`` ``client``: its TTFT, TPOT, inter-token gaps, end-to-end
    time and tokens. A token is a chunk with content, but not the role chunk's empty one
    (random models' tokens may decode to empty text). Fewer tokens than asked raise."""
    start = time.perf_counter()
    stamps: list[float] = []
    tokens = 0
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        if (
            delta is not None
            and delta.content is not None
            and (delta.role is None or delta.content)
        ):
            stamps.append(time.perf_counter())
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter()
    if not stamps or tokens != max_tokens:
        raise RuntimeError(f"{model}: {tokens} tokens, {len(stamps)} content chunks")
    return {
        "ttft": stamps[0] - start,
        "tpot": (end - stamps[0]) / (tokens - 1) if tokens > 1 else float("nan"),
        "itl": [b - a for a, b in itertools.pairwise(stamps)],
        "e2e": end - start,
        "tokens": tokens,
    }
