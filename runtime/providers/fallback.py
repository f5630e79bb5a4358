"""Fallback between targets: the next one answers when one is unavailable.

A target is anything with ``name``, ``call(method, body)`` and ``stream(method, body)``
(``method`` is ``chat`` or ``completions``) in the OpenAI shape: a
:class:`~runtime.providers.client.ProviderClient`, or (in the gateway's router) a
self-hosted LLM deployment. Only
:class:`ModelUnavailableError` moves on to the next target: a request the
target refused (4xx) would be refused by the next one too. A stream moves on only
before its first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Literal, Protocol

from runtime.errors import ModelUnavailableError
from runtime.providers.metrics import provider_metrics

Method = Literal["chat", "completions"]


class Target(Protocol):
    name: str

    async def call(self, method: Method, body: dict[str, Any]) -> dict[str, Any]: ...

    def stream(
        self, method: Method, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[Any]:
        """Chunk dicts; with ``frames`` a target may also yield ``str``, SSE text of
        chunks without usage, to be sent on as it is."""
        ...


class FallbackChain:
    """Try ``targets`` in order.

    Example::

        chain = FallbackChain([primary, backup])
        reply = await chain.chat(body)       # backup answers when primary is unavailable
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        if not targets:
            raise ValueError("a fallback chain needs at least one target")
        self.targets = list(targets)
        #: The target that answered the last call (for tests; the reply's `model` says it).
        self.last_target: str | None = None

    def _answered(self, name: str, failures: list[str]) -> None:
        self.last_target = name
        if failures:  # the first target failed: count the fallback
            provider_metrics().fallback(self.targets[0].name, name)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.call("chat", body)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.stream("chat", body)

    async def call(self, method: Method, body: dict[str, Any]) -> dict[str, Any]:
        failures: list[str] = []
        for target in self.targets:
            try:
                reply = await target.call(method, body)
            except ModelUnavailableError as err:
                failures.append(f"{target.name}: {err.message}")
                continue
            self._answered(target.name, failures)
            return reply
        raise ModelUnavailableError(_exhausted(failures))

    async def stream(
        self, method: Method, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncGenerator[Any, None]:
        """The first available target's chunks; ``frames``: the router's (targets that
        take it may pass token chunks on as SSE text)."""
        failures: list[str] = []
        for target in self.targets:
            stream = target.stream(method, body, frames=frames)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                self._answered(target.name, failures)
                return
            except ModelUnavailableError as err:
                failures.append(f"{target.name}: {err.message}")
                continue
            self._answered(target.name, failures)
            try:
                yield first
                async for chunk in stream:
                    yield chunk
            finally:
                closer = getattr(stream, "aclose", None)
                if closer is not None:
                    await closer()
            return
        raise ModelUnavailableError(_exhausted(failures))


def _exhausted(failures: list[str]) -> str:
    if len(failures) == 1:
        return failures[0]
    return "every target is unavailable; " + "; ".join(failures)
