"""An OpenAI-compatible provider, called with timeouts, retries and a circuit breaker.

Retryable: connection errors, a timeout before any byte of the answer, and the
statuses of ``retries.on_status`` (``Retry-After`` is honoured up to
``backoff_max_s``). Not retried: other 4xx (the request's own fault, passed to the
caller as :class:`LLMError` with the provider's status, type and message) and a
stream that has yielded a chunk (its remainder cannot be replayed). Exhausted
retries, an open circuit and a broken stream raise
:class:`~runtime.errors.ModelUnavailableError` (503), on which a fallback may take over.

The API key is read from ``api_key_env`` and sent as a bearer token; it never
appears in an error, a log record or a repr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from runtime import _env, _sse
from runtime.config.providers import ProviderConfig
from runtime.errors import LLMError, ModelUnavailableError
from runtime.providers.circuit import CircuitBreaker
from runtime.providers.metrics import provider_metrics
from runtime.telemetry import tracing

logger = logging.getLogger("ray.serve")


_PATHS = {"chat": "/chat/completions", "completions": "/completions"}


#: The provider cannot answer now (retries exhausted, circuit open, stream broken).
ProviderUnavailableError = ModelUnavailableError


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ProviderClient:
    """Chat and text completions from one provider.

    Example::

        client = ProviderClient(ProviderConfig(name="openai",
            base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY"))
        reply = await client.chat({"model": "gpt-4o-mini", "messages": [...]})
        async for chunk in client.chat_stream({...}):
            ...
    """

    def __init__(
        self,
        config: ProviderConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.name = config.name
        self.breaker = CircuitBreaker(config.circuit.failure_threshold, config.circuit.open_s)
        self._sleep = sleep
        self._jitter = jitter
        key = _env.required(config.api_key_env) if config.api_key_env else None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        t = config.timeouts
        self._http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(t.first_byte_s, connect=t.connect_s),
            event_hooks={"request": [_inject_trace]},
        )

    def __repr__(self) -> str:  # no headers, no key
        return f"ProviderClient(name={self.name!r}, base_url={self.config.base_url!r})"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- API -------------------------------------------------------------------------

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """``method``: ``chat`` or ``completions`` (a fallback-chain target)."""
        return await self._complete(_PATHS[method], body)

    def stream(
        self, method: str, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """The answer's chunks: dicts, whatever ``frames`` says (``fallback.Target``)."""
        return self._stream(_PATHS[method], body)

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._complete("/chat/completions", body)

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", body)

    async def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._complete("/completions", body)

    def completions_stream(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", body)

    # -- machinery -------------------------------------------------------------------

    def _upstream(self, body: dict[str, Any], stream: bool) -> tuple[dict[str, Any], str]:
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise LLMError("the request body must be a JSON object with a `model` string")
        requested = body["model"]
        out = {**body, "model": self.config.models.get(requested, requested), "stream": stream}
        if stream:
            out.setdefault("stream_options", {"include_usage": True})
        return out, requested

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        r = self.config.retries
        delay = self._jitter() * min(r.backoff_max_s, r.backoff_initial_s * 2.0 ** (attempt - 1))
        if retry_after is not None:
            delay = max(delay, min(retry_after, r.backoff_max_s))
        return delay

    async def _attempts(self, attempt_once: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``attempt_once`` under the retry policy and the circuit breaker."""
        retries = self.config.retries
        last = "no attempt was made"
        metrics = provider_metrics()
        for attempt in range(1, retries.max_attempts + 1):
            if not self.breaker.allow():
                metrics.attempt(self.name, "circuit_open", attempt, self.breaker.state)
                raise ProviderUnavailableError(
                    f"provider {self.name!r} is unavailable: its circuit is open after "
                    f"repeated failures (next try in {self.breaker.retry_in():.1f} s)"
                )
            try:
                # The request carries this span's W3C trace context (`traceparent`).
                with tracing.span(
                    "provider.attempt",
                    {"runtime.provider": self.name, "runtime.attempt": attempt},
                    kind=tracing.SpanKind.CLIENT,
                ):
                    result = await attempt_once()
            except _Retryable as err:
                self.breaker.record_failure()
                metrics.attempt(self.name, "retryable", attempt, self.breaker.state)
                last = err.reason
                logger.warning(
                    "provider %s attempt %d/%d failed: %s",
                    self.name,
                    attempt,
                    retries.max_attempts,
                    err.reason,
                )
                if attempt < retries.max_attempts:
                    await self._sleep(self._backoff(attempt, err.retry_after))
                continue
            except LLMError:
                self.breaker.record_success()  # the provider answered; the request was bad
                metrics.attempt(self.name, "rejected", attempt, self.breaker.state)
                raise
            except BaseException:
                self.breaker.abandon()
                raise
            self.breaker.record_success()
            metrics.attempt(self.name, "ok", attempt, self.breaker.state)
            return result
        raise ProviderUnavailableError(
            f"provider {self.name!r} failed {retries.max_attempts} attempt(s); last: {last}"
        )

    async def _complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        upstream, requested = self._upstream(body, stream=False)

        async def once() -> dict[str, Any]:
            try:
                async with asyncio.timeout(self.config.timeouts.total_s):
                    response = await self._http.post(path, json=upstream)
                    self._check(response.status_code, response.content, response.headers)
                    data = response.json()
            except TimeoutError:
                raise _Retryable(f"no answer within {self.config.timeouts.total_s:g} s") from None
            except httpx.TransportError as exc:
                raise _Retryable(_transport_reason(exc)) from None
            except ValueError:
                raise _Retryable("the answer was not JSON") from None
            if isinstance(data, dict) and "model" in data:
                data["model"] = requested
            return dict(data)

        result: dict[str, Any] = await self._attempts(once)
        return result

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        upstream, requested = self._upstream(body, stream=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeouts.total_s

        async def once() -> tuple[httpx.Response, AsyncIterator[str]]:
            request = self._http.build_request("POST", path, json=upstream)
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise _Retryable(_transport_reason(exc)) from None
            try:
                if response.status_code >= 400:
                    content = await response.aread()
                    self._check(response.status_code, content, response.headers)
                return response, _sse.payloads(response.aiter_text())
            except BaseException:
                await response.aclose()
                raise

        response, events = await self._attempts(once)
        try:
            async with asyncio.timeout_at(deadline):
                async for data in events:
                    if data.strip() == "[DONE]":
                        return
                    chunk = json.loads(data)
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise LLMError.from_body(chunk, 500)
                    if isinstance(chunk, dict) and "model" in chunk:
                        chunk["model"] = requested
                    yield chunk
            broken = "the stream ended without [DONE]"
        except (httpx.TransportError, TimeoutError, ValueError) as exc:
            broken = f"the stream broke off ({type(exc).__name__})"
        finally:
            await response.aclose()
        self.breaker.record_failure()
        raise ProviderUnavailableError(f"provider {self.name!r}: {broken}")

    def _check(self, status: int, content: bytes, headers: httpx.Headers) -> None:
        if status < 400:
            return
        if status in self.config.retries.on_status:
            raise _Retryable(f"HTTP {status}", _retry_after(headers.get("retry-after")))
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):  # the provider's own words, under its status
            kind = str(err.get("type") or "UpstreamError")
            raise LLMError(str(err.get("message", "")), status, kind, err.get("param"))
        raise LLMError(f"provider {self.name!r} answered HTTP {status}", status, "UpstreamError")


async def _inject_trace(request: httpx.Request) -> None:
    tracing.inject(request.headers)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"
