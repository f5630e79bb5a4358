"""The targets a model name routes to: an LLM deployment of this cluster (by handle)
or a model of an external provider (by HTTP), each raising
:class:`~runtime.errors.ModelUnavailableError` when a fallback should answer.

A self-hosted model is *unavailable* when its deployment has no running replica (cold,
scaled to zero, or down; refreshed every ``ready_refresh_s``), when Serve refuses the
call for back-pressure (saturated: the deployment's ``max_queued_requests`` is
reached), when the call cannot reach a replica, or when the engine itself answers 503.
An external model is unavailable when the provider's retries are exhausted, its
circuit is open, or its ``rate_limit`` is spent. Each target answers with ``model``
set to its own name, so a reply says which model answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve
from ray.serve.exceptions import BackPressureError

from runtime import _streams
from runtime.config.router import ModelRoute
from runtime.errors import APIError, LLMError, ModelUnavailableError, RateLimitError
from runtime.providers.client import ProviderClient
from runtime.providers.fallback import Method
from runtime.routing.limits import Limiter

logger = logging.getLogger("ray.serve")


def usage_of(reply: dict[str, Any] | None) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a reply or a usage chunk; None when it has none."""
    usage = (reply or {}).get("usage") if isinstance(reply, dict) else None
    if not isinstance(usage, dict):
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def tokens_of(reply: dict[str, Any] | None) -> int:
    """Prompt plus completion tokens of a reply or a usage chunk (0 when it has none)."""
    return sum(usage_of(reply) or ())


class Handles:
    """Deployment and application handles, made once per replica (not per request:
    an application handle asks the controller for the app's ingress)."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str | None], Any] = {}

    def deployment(self, app: str, deployment: str) -> Any:
        key = (app, deployment)
        if key not in self._by_key:
            self._by_key[key] = serve.get_deployment_handle(deployment, app_name=app)
        return self._by_key[key]

    def app(self, app: str) -> Any:
        key = (app, None)
        if key not in self._by_key:
            self._by_key[key] = serve.get_app_handle(app)
        return self._by_key[key]


class ReadyReplicas:
    """Which self-hosted deployments have a running replica, from ``serve.status()``."""

    def __init__(self, refresh_s: float) -> None:
        self.refresh_s = refresh_s
        self._running: dict[tuple[str, str], int] | None = None  # None: not known yet
        self._checked = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    def _read(self) -> dict[tuple[str, str], int]:
        running: dict[tuple[str, str], int] = {}
        for app_name, app in serve.status().applications.items():
            for name, dep in app.deployments.items():
                running[(app_name, name)] = int(dep.replica_states.get("RUNNING", 0))
        return running

    async def _refresh(self) -> None:
        try:
            self._running = await asyncio.to_thread(self._read)
        except Exception as exc:  # keep the last known state
            logger.warning("could not read Serve's status: %s", type(exc).__name__)
        finally:
            self._checked = time.monotonic()

    async def running(self, app: str, deployment: str) -> bool:
        stale = time.monotonic() - self._checked > self.refresh_s
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.create_task(self._refresh())
        if self._running is None and self._refreshing is not None:
            await asyncio.shield(self._refreshing)
        if self._running is None:
            return True  # unknown: let the call find out
        return self._running.get((app, deployment), 0) > 0


class SelfHosted:
    """An LLM deployment of this cluster, called by handle."""

    def __init__(self, route: ModelRoute, ready: ReadyReplicas | None, handles: Handles) -> None:
        """``ready``: check for a running replica first (only where a fallback follows;
        the last model of a chain waits, so that a scaled-to-zero one can start)."""
        assert route.app is not None
        self.name = route.name
        self.route = route
        self.app: str = route.app
        self._ready = ready
        self._handles = handles

    def _get_handle(self) -> Any:
        return self._handles.deployment(self.app, self.route.deployment)

    def _unavailable(self, why: str) -> ModelUnavailableError:
        return ModelUnavailableError(f"the model `{self.name}` is unavailable now ({why})")

    async def _check_ready(self) -> None:
        if self._ready is not None and not await self._ready.running(
            self.app, self.route.deployment
        ):
            raise self._unavailable("no running replica")

    def _mapped(self, exc: BaseException) -> BaseException:
        exc = APIError.cause(exc)  # the replica's own error, not Ray's wrapper of it
        if isinstance(exc, LLMError):
            if exc.status == 503:
                return self._unavailable(exc.message)
            return LLMError(exc.message, exc.status, exc.type, exc.param)
        if isinstance(exc, BackPressureError):
            return self._unavailable("saturated: its request queue is full")
        return self._unavailable(f"unreachable: {type(exc).__name__}")

    def _timed_out(self) -> LLMError:
        return LLMError(
            f"the model {self.name!r} did not answer within {self.route.timeout_s:g} s",
            504,
            "Timeout",
        )

    async def call(self, method: Method, body: dict[str, Any]) -> dict[str, Any]:
        await self._check_ready()
        try:
            response = getattr(self._get_handle(), method).remote({**body, "model": self.name})
        except Exception as exc:  # no such deployment (yet): unavailable, a fallback answers
            raise self._mapped(exc) from None
        try:
            async with asyncio.timeout(self.route.timeout_s):
                reply: dict[str, Any] = await response
        except TimeoutError:
            response.cancel()  # the replica stops generating
            raise self._timed_out() from None
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:
            raise self._mapped(exc) from None
        return reply

    async def stream(
        self, method: Method, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[dict[str, Any] | str]:
        """The answer's chunks; with ``frames``, its token chunks as the SSE text the
        replica passed on (``runtime.llm.server``)."""
        await self._check_ready()
        handle = self._get_handle().options(stream=True)
        call = getattr(handle, f"{method}_stream")
        body = {**body, "model": self.name}
        response = call.remote(body, frames=True) if frames else call.remote(body)
        # Closing this stream (the client went away, or a chunk is late) stops the
        # generation.
        async with contextlib.aclosing(_streams.relay(response, self._mapped)) as chunks:
            while True:
                try:
                    async with asyncio.timeout(self.route.timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise self._timed_out() from None
                yield chunk


class External:
    """A model of an external provider, under the provider's rate limit."""

    def __init__(self, route: ModelRoute, client: ProviderClient, limiter: Limiter) -> None:
        self.name = route.name
        self.client = client
        self._limiter = limiter

    async def _admit(self) -> None:
        try:
            await self._limiter.provider_admit(self.client.name)
        except RateLimitError as err:
            raise ModelUnavailableError(
                f"the model `{self.name}` is unavailable now ({err.message})"
            ) from None

    async def call(self, method: Method, body: dict[str, Any]) -> dict[str, Any]:
        await self._admit()
        reply = await self.client.call(method, {**body, "model": self.name})
        await self._limiter.provider_charge(self.client.name, tokens_of(reply))
        return reply

    async def stream(
        self, method: Method, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The answer's chunks (dicts, whatever ``frames`` says)."""
        await self._admit()
        tokens = 0
        try:
            async for chunk in self.client.stream(method, {**body, "model": self.name}):
                tokens = tokens_of(chunk) or tokens
                yield chunk
        finally:
            await self._limiter.provider_charge(self.client.name, tokens)
