"""The LLM router: one component that both the gateway and the agent replicas run.

A model name routes to a self-hosted deployment (one Serve hop, by handle) or to an
external provider (one HTTP call), with the model's fallbacks behind it
(``runtime.routing.targets``). Around each call the router admits it against the
tenant's token limits, charges the answer's tokens when it ends, and counts its usage
and cost under the call's :class:`~runtime.context.CallContext` (tenant, agent,
scenario). A request the model refused (4xx) is not retried elsewhere; streams fall
back only before their first chunk.

A caller may be *patient* (``patience_s``, the agents' LLM calls): when every model of
the chain is unavailable (no replica, restarting, back-pressure, the replica died
mid-call), the chain is tried again with backoff until the patience is spent, under
the call's one reservation; a stream only until its first chunk. An LLM call has no
side effect, so a retry is safe: at least once, and the answer used is the last.

    >>> router = LLMRouter(config, Limiter(config.rate_limits, config.providers))  # doctest: +SKIP
    >>> ctx = CallContext(tenant="acme", agent="assistant", scenario="support")
    >>> reply = await router.call(ctx, "chat", body)  # doctest: +SKIP
    >>> async for chunk in router.stream(ctx, "chat", body): ...  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import tenacity

from runtime.config.router import RouterConfig
from runtime.context import CallContext
from runtime.errors import LLMError, ModelUnavailableError, PermissionDeniedError, quote
from runtime.providers.client import ProviderClient
from runtime.providers.fallback import FallbackChain, Method
from runtime.routing.limits import Limiter
from runtime.routing.metering import UsageMetrics, usage_metrics
from runtime.routing.requests import prepare
from runtime.routing.targets import External, Handles, ReadyReplicas, SelfHosted, usage_of

#: Which model names a caller may use (its key's scopes).
Allowed = Callable[[str], bool]
T = TypeVar("T")
logger = logging.getLogger("ray.serve")


def _retrying(patience_s: float) -> tenacity.AsyncRetrying:
    """Retries of an unavailable model for ``patience_s``: 0.25 s, doubling to 2 s, with
    jitter (replicas restarting together must not be met by every caller at once)."""
    return tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception_type(ModelUnavailableError),
        stop=tenacity.stop_after_delay(patience_s),
        wait=tenacity.wait_exponential_jitter(initial=0.25, max=2.0, jitter=0.25),
        before_sleep=_log_retry,
        reraise=True,
    )


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    logger.warning(
        "the model is unavailable (attempt %d, %.1f s): retrying; %s",
        state.attempt_number,
        state.seconds_since_start or 0.0,
        getattr(error, "message", type(error).__name__),
    )


async def patiently(attempt: Callable[[], Awaitable[T]], patience_s: float) -> T:
    """``attempt()``, tried again while it raises ModelUnavailableError, for
    ``patience_s`` (0: once)."""
    if patience_s <= 0:
        return await attempt()

    async def run() -> T:  # a coroutine function: tenacity calls others synchronously
        return await attempt()

    return await _retrying(patience_s)(run)


async def _opened(
    chain: FallbackChain,
    method: Method,
    body: dict[str, Any],
    patience_s: float,
    frames: bool,
) -> tuple[AsyncGenerator[Any, None], list[Any]]:
    """The chain's stream and its first chunk (none: an empty stream), the stream opened
    again while no model of the chain is available, for ``patience_s``."""

    async def attempt() -> tuple[AsyncGenerator[Any, None], list[Any]]:
        chunks = chain.stream(method, body, frames=frames)
        try:
            return chunks, [await anext(chunks)]
        except StopAsyncIteration:
            return chunks, []
        except BaseException:
            await chunks.aclose()
            raise

    return await patiently(attempt, patience_s)


async def _chained(first: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


def with_usage(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The stream request asking for its usage (to charge its tokens), and whether the
    client asked for it too."""
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise LLMError("`stream_options` must be an object", param="stream_options")
    wanted = bool(options.get("include_usage"))
    return {**body, "stream_options": {**options, "include_usage": True}}, wanted


def visible(chunk: Any, usage_wanted: bool) -> Any:
    """The chunk as the client asked for it: without usage unless it asked (None: the
    usage-only last chunk, which it did not ask for)."""
    if usage_wanted or not isinstance(chunk, dict) or "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


class LLMRouter:
    """Routes by model name, under the caller's token limits."""

    def __init__(
        self,
        config: RouterConfig,
        limiter: Limiter | None = None,
        handles: Handles | None = None,
        metrics: UsageMetrics | None = None,
    ) -> None:
        self.config = config
        self.limiter = limiter or Limiter(config.rate_limits, config.providers)
        self.metrics = metrics or usage_metrics()
        self._prices = {m.name: m.price for m in config.models if m.price is not None}
        self._limits = {m.name: m.limits for m in config.models}
        self._ready = ReadyReplicas(config.ready_refresh_s)
        self._handles = handles or Handles()
        self.clients = {p.name: ProviderClient(p) for p in config.providers}
        self.chains = {m.name: self._chain([m.name, *m.fallback]) for m in config.models}
        self._later: set[asyncio.Task[None]] = set()

    def _chain(self, names: list[str]) -> FallbackChain:
        routes = {m.name: m for m in self.config.models}
        targets: list[SelfHosted | External] = []
        for i, name in enumerate(names):
            route = routes[name]
            if route.provider is not None:
                targets.append(External(route, self.clients[route.provider], self.limiter))
            else:
                # The last model of a chain waits (a scaled-to-zero one can start); the
                # others are skipped at once while they have no running replica.
                last = i == len(names) - 1
                targets.append(SelfHosted(route, None if last else self._ready, self._handles))
        return FallbackChain(targets)

    def __contains__(self, model: object) -> bool:
        return model in self.chains

    def _chain_of(self, body: dict[str, Any], allowed: Allowed | None = None) -> FallbackChain:
        """The model's chain; with ``allowed`` (the caller's model scopes), only the
        models of it that the caller may use: a key allowed one self-hosted model must
        not have its prompts answered by an external provider it may not use."""
        name = body.get("model")
        if not isinstance(name, str):
            raise LLMError("`model` is required", param="model")
        chain = self.chains.get(name)
        if chain is None:
            raise LLMError(
                f"the model {quote(name)} does not exist", 404, "NotFoundError", param="model"
            )
        if allowed is None:
            return chain
        targets = [t for t in chain.targets if allowed(t.name)]
        if len(targets) == len(chain.targets):
            return chain
        if not targets:
            raise PermissionDeniedError(f"this API key may not use the model {quote(name)}")
        return FallbackChain(targets)

    async def call(
        self,
        ctx: CallContext,
        method: Method,
        body: dict[str, Any],
        *,
        admitted: bool = False,
        charge_later: bool = False,
        allowed: Allowed | None = None,
        patience_s: float = 0.0,
    ) -> dict[str, Any]:
        """One answer. ``admitted``: the caller has checked the token limits already
        (the gateway, with the request's own limits); ``charge_later``: charge after
        returning (off the latency path; a Redis round trip), else before; ``allowed``:
        the models the caller may use (a fallback outside them is skipped);
        ``patience_s``: how long to wait for an unavailable model (module docs)."""
        chain = self._chain_of(body, allowed)
        body, most = prepare(method, body, self._limits[body["model"]])
        if not admitted:
            await self.limiter.admit_tokens(ctx.tenant, ctx.key_id)
        reserved = await self.limiter.reserve_tokens(ctx.tenant, ctx.key_id, most)
        try:
            reply = await patiently(lambda: chain.call(method, body), patience_s)
        except BaseException:
            await asyncio.shield(self._charge(ctx, None, None, reserved))
            raise
        charge = self._charge(ctx, reply.get("model"), usage_of(reply), reserved)
        if charge_later:
            self._in_background(charge)
        else:
            await charge
        return reply

    async def stream(
        self,
        ctx: CallContext,
        method: Method,
        body: dict[str, Any],
        *,
        admitted: bool = False,
        allowed: Allowed | None = None,
        patience_s: float = 0.0,
        frames: bool = False,
    ) -> AsyncGenerator[Any, None]:
        """The chunks of one answer (usage only if ``stream_options`` asks for it); its
        tokens are charged when it ends, however it ends. Closing it stops the model.

        ``frames`` (the gateway, which sends SSE on): a self-hosted model's token chunks
        may come as ``str``, SSE text to send as it is; the first chunk and the usage
        chunk are always dicts, and no ``str`` holds usage."""
        chain = self._chain_of(body, allowed)
        body, most = prepare(method, body, self._limits[body["model"]])
        if not admitted:
            await self.limiter.admit_tokens(ctx.tenant, ctx.key_id)
        upstream, usage_wanted = with_usage(body)
        reserved = await self.limiter.reserve_tokens(ctx.tenant, ctx.key_id, most)
        usage, answered_by = None, None
        try:
            opened, first = await _opened(chain, method, upstream, patience_s, frames)
            async with contextlib.aclosing(opened) as rest:
                async for chunk in _chained(first, rest):
                    if isinstance(chunk, str):
                        yield chunk
                        continue
                    usage = usage_of(chunk) or usage
                    if answered_by is None and isinstance(chunk, dict):
                        answered_by = chunk.get("model", body["model"])
                    if (shown := visible(chunk, usage_wanted)) is not None:
                        yield shown
        finally:
            await asyncio.shield(self._charge(ctx, answered_by, usage, reserved))

    async def _charge(
        self, ctx: CallContext, model: Any, usage: tuple[int, int] | None, reserved: int = 0
    ) -> None:
        """Charge an answer's tokens to the tenant's (and key's) limits, beyond the
        ``reserved`` ones charged before the call (a reservation is not given back: a
        stream closed early, or an answer shorter than asked, has spent it); count its
        usage and cost. ``model``: the model that answered (None: none did)."""
        tokens = sum(usage) if usage else 0
        await self.limiter.charge(ctx.tenant, ctx.key_id, tokens - reserved)
        self.metrics.charged(ctx.tenant, model, max(tokens, reserved))
        if model is not None:
            name = str(model)
            self.metrics.used(ctx, name, *(usage or (0, 0)), self._prices.get(name))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._later.add(task)  # a reference until it ends
        task.add_done_callback(self._later.discard)

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()
