"""Rate limits of the gateway and the LLM router, on the `limits` library (memory or
Redis storage).

- Requests per minute (per tenant, per key, per provider): a moving window, exact; a
  refused request is not counted.
- LLM tokens per minute (prompt plus completion): a fixed one-minute window. The size
  of a reply is known only at its end, so tokens are charged then, and a request is
  refused while the window's tokens are spent (one request may overshoot the limit;
  the next ones wait for the window to turn).
- Concurrency per tenant: a counter in this replica (``concurrency`` is per replica).

With Redis (``storage_url_env``) every gateway and agent replica shares the counters:
an agent's LLM calls and the tenant's own calls spend one token budget. In memory,
each replica counts alone: a gateway replica its clients' calls, an agent replica its
agents' calls, each against the whole limit. When the shared storage fails,
``on_storage_failure`` decides: count in this replica's memory meanwhile (``memory``,
the default: limits still hold, per replica), refuse the request (503) or let it
through uncounted (logged). Each check waits at most ``storage_timeout_s`` on the
storage, and after a failure a circuit breaker skips the storage for
``storage_open_s`` (one probe then retries it), so that a blackholed Redis costs a
request half a second once, not a minute each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from runtime import _env
from runtime.config.providers import ProviderConfig, RateLimit
from runtime.config.router import RateLimitConfig
from runtime.errors import LimiterUnavailableError, RateLimitError
from runtime.providers.circuit import CircuitBreaker

logger = logging.getLogger("ray.serve")

T = TypeVar("T")


@dataclass(frozen=True)
class _Counters:
    """The two strategies over one storage: requests (moving window), tokens (fixed)."""

    requests: MovingWindowRateLimiter
    tokens: FixedWindowRateLimiter

    @classmethod
    def over(cls, storage: Storage) -> _Counters:
        return cls(MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage))


@dataclass(frozen=True)
class _Subject:
    kind: str  # "tenant", "key", "provider"
    name: str
    limit: RateLimit


def _item(amount: int | None, namespace: str) -> RateLimitItem | None:
    return RateLimitItemPerMinute(amount, namespace=namespace) if amount else None


def storage_for(url: str | None, timeout_s: float = 0.5) -> Storage:
    """Memory storage, or Redis (redis-py's asyncio client) for a ``redis://`` URL, with
    ``timeout_s`` to connect and to reply, and no retries (the limiter's circuit and
    the client's own retry decide what happens next)."""
    if url is None:
        return MemoryStorage()
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError("the rate-limit storage URL must start with redis:// or rediss://")
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    return RedisStorage("async+" + url, implementation="redispy", key_prefix="runtime", **options)


class Limiter:
    """The gateway's limits. ``admit`` before a request, ``charge`` after it::

    limiter = Limiter(config.rate_limits, config.providers)
    await limiter.admit(tenant, key_id)          # raises RateLimitError
    limiter.acquire(tenant)                      # the tenant's concurrency slot
    ...                                          # finally: limiter.release(tenant)
    await limiter.charge(tenant, key_id, tokens=123)
    """

    def __init__(
        self,
        config: RateLimitConfig,
        providers: list[ProviderConfig] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        url = _env.required(config.storage_url_env) if config.storage_url_env else None
        self.shared = url is not None
        self.storage = storage_for(url, config.storage_timeout_s)
        self.breaker = CircuitBreaker(failure_threshold=1, open_s=config.storage_open_s)
        self._counters = _Counters.over(self.storage)
        # Where checks count while the shared storage is unreachable (``memory``).
        self._local = (
            _Counters.over(MemoryStorage())
            if self.shared and config.on_storage_failure == "memory"
            else None
        )
        self._degraded = False  # counting in _local now (logged once per outage)
        self._providers = {p.name: p.rate_limit for p in providers or []}
        self._in_flight: dict[str, int] = {}
        self._clock = clock

    def __repr__(self) -> str:  # the URL may hold a password
        return f"Limiter(shared={self.shared})"

    def _subjects(self, tenant: str, key_id: str | None) -> list[_Subject]:
        subjects = [_Subject("tenant", tenant, self.config.tenant(tenant))]
        if key_id is not None:
            subjects.insert(0, _Subject("key", key_id, self.config.key(key_id)))
        return subjects

    async def _guard(
        self, call: Callable[[_Counters], Awaitable[T]], default: T, *, charging: bool = False
    ) -> T:
        """``call`` on the storage, within the timeout and the circuit; on a failure,
        ``on_storage_failure`` decides (``charging``: the answer exists already, so a
        failure to count it is never raised)."""
        if not self.breaker.allow():  # failed just now: answer at once
            return await self._unavailable("circuit open", call, default, charging)
        try:
            async with asyncio.timeout(self.config.storage_timeout_s):
                result = await call(self._counters)
        except RateLimitError:
            self._recovered()
            raise
        except Exception as exc:
            self.breaker.record_failure()
            return await self._unavailable(type(exc).__name__, call, default, charging)
        except BaseException:  # cancelled: a half-open probe must not stay taken
            self.breaker.abandon()
            raise
        self._recovered()
        return result

    def _recovered(self) -> None:
        self.breaker.record_success()
        if self._degraded:
            self._degraded = False
            logger.warning("rate-limit storage answers again: counting there")

    async def _unavailable(
        self, why: str, call: Callable[[_Counters], Awaitable[T]], default: T, charging: bool
    ) -> T:
        if self._local is not None:
            if not self._degraded:
                self._degraded = True
                logger.warning(
                    "rate-limit storage failed (%s): counting in this replica's memory", why
                )
            return await call(self._local)
        if charging:
            logger.warning("rate-limit storage failed (%s): tokens not counted", why)
            return default
        if self.config.on_storage_failure == "refuse":
            raise LimiterUnavailableError(f"the rate-limit storage is unreachable ({why})")
        logger.warning("rate-limit storage failed (%s): request let through", why)
        return default

    def _retry_after(self, reset_time: float) -> int:
        return max(1, math.ceil(reset_time - self._clock()))

    async def _check(
        self,
        counters: _Counters,
        subjects: list[_Subject],
        what: str,
        count: bool = True,
        tokens_too: bool = True,
    ) -> None:
        """Count one request against each subject (``count``); refuse on the first spent
        limit (of tokens too, with ``tokens_too``)."""
        for s in subjects:
            requests = _item(s.limit.requests_per_minute, "req") if count else None
            if requests is not None and not await counters.requests.hit(requests, s.kind, s.name):
                stats = await counters.requests.get_window_stats(requests, s.kind, s.name)
                raise RateLimitError(
                    f"rate limit of the {s.kind}{what}: {requests.amount} requests per minute",
                    self._retry_after(stats.reset_time),
                )
            tokens = _item(s.limit.tokens_per_minute, "tok") if tokens_too else None
            if tokens is not None:
                stats = await counters.tokens.get_window_stats(tokens, s.kind, s.name)
                if stats.remaining <= 0:
                    raise RateLimitError(
                        f"token limit of the {s.kind}{what}: {tokens.amount} LLM tokens per minute",
                        self._retry_after(stats.reset_time),
                    )

    async def admit(self, tenant: str, key_id: str, uses_llm: bool = True) -> None:
        """Count a request of ``key_id`` for ``tenant``; raise when a limit is spent (the
        token limits only for a request that ``uses_llm``)."""
        subjects = self._subjects(tenant, key_id)
        await self._guard(lambda c: self._check(c, subjects, "", tokens_too=uses_llm), None)

    async def admit_tokens(self, tenant: str, key_id: str | None = None) -> None:
        """An LLM call: refused when the tenant's (or key's) tokens are spent; counts
        no request."""
        subjects = self._subjects(tenant, key_id)
        await self._guard(lambda c: self._check(c, subjects, "", count=False), None)

    async def reserve_tokens(self, tenant: str, key_id: str | None, tokens: int) -> int:
        """Charge, before an LLM call, the most tokens it can generate (``n x
        max_tokens``): refused (429) when a window has fewer left, so that one request
        cannot spend far more than its tenant's limit. The amount charged is capped at
        each limit (a request asking more than a whole minute's tokens still runs when
        the window is untouched, and spends it); returned, for ``charge`` to deduct."""
        if tokens <= 0:
            return 0
        subjects = [
            (s, item)
            for s in self._subjects(tenant, key_id)
            if (item := _item(s.limit.tokens_per_minute, "tok")) is not None
        ]
        if not subjects:
            return 0
        reserved = min(tokens, *(item.amount for _, item in subjects))

        async def run(counters: _Counters) -> int:
            for s, item in subjects:
                if not await counters.tokens.test(item, s.kind, s.name, cost=reserved):
                    stats = await counters.tokens.get_window_stats(item, s.kind, s.name)
                    raise RateLimitError(
                        f"token limit of the {s.kind}: {item.amount} LLM tokens per minute "
                        f"({stats.remaining} left; this request may use {reserved})",
                        self._retry_after(stats.reset_time),
                    )
            for s, item in subjects:
                await counters.tokens.hit(item, s.kind, s.name, cost=reserved)
            return reserved

        return await self._guard(run, 0)

    async def charge(self, tenant: str, key_id: str | None, tokens: int) -> None:
        """Charge the tokens of a finished reply."""
        if tokens <= 0:
            return

        async def run(counters: _Counters) -> None:
            for s in self._subjects(tenant, key_id):
                item = _item(s.limit.tokens_per_minute, "tok")
                if item is not None:
                    await counters.tokens.hit(item, s.kind, s.name, cost=tokens)

        await self._guard(run, None, charging=True)

    async def provider_admit(self, provider: str) -> None:
        """Raise :class:`RateLimitError` when the provider's quota is spent."""
        limit = self._providers.get(provider)
        if limit is not None:
            subject = _Subject("provider", provider, limit)
            await self._guard(lambda c: self._check(c, [subject], f" {provider!r}"), None)

    async def provider_charge(self, provider: str, tokens: int) -> None:
        limit = self._providers.get(provider)
        item = _item(limit.tokens_per_minute, "tok") if limit else None
        if item is not None and tokens > 0:

            async def run(counters: _Counters) -> None:
                await counters.tokens.hit(item, "provider", provider, cost=tokens)

            await self._guard(run, None, charging=True)

    def acquire(self, tenant: str) -> None:
        """Take one of the tenant's concurrent slots (this replica); ``release`` it."""
        limit = self.config.tenant(tenant).concurrency
        current = self._in_flight.get(tenant, 0)
        if limit is not None and current >= limit:
            raise RateLimitError(
                f"concurrency limit of the tenant: {limit} requests in flight", 1, "concurrency"
            )
        self._in_flight[tenant] = current + 1

    def release(self, tenant: str) -> None:
        left = self._in_flight.get(tenant, 0) - 1
        if left > 0:
            self._in_flight[tenant] = left
        else:
            self._in_flight.pop(tenant, None)
