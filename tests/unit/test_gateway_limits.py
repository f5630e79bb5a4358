"""Rate limits of the gateway (``runtime.routing.limits``) in memory (shared through a
real Redis on loopback: tests/cluster/test_gateway_limits.py; with two real replicas:
tests/cluster/test_gateway_routing.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.config.gateway import GatewayAppConfig, RateLimitConfig
from runtime.errors import LimiterUnavailableError, RateLimitError
from runtime.routing.limits import Limiter
from tests.support.net import free_port


def _limits(**data: Any) -> RateLimitConfig:
    return RateLimitConfig.model_validate(data)


def test_requests_per_minute_per_key_and_tenant() -> None:
    limiter = Limiter(
        _limits(per_key={"requests_per_minute": 2}, per_tenant={"requests_per_minute": 3})
    )

    async def main() -> None:
        await limiter.admit("t", "k1")
        await limiter.admit("t", "k1")
        with pytest.raises(RateLimitError, match="key: 2 requests per minute") as err:
            await limiter.admit("t", "k1")
        assert 1 <= err.value.retry_after <= 60
        await limiter.admit("t", "k2")  # another key of the tenant: the tenant's third
        with pytest.raises(RateLimitError, match="tenant: 3 requests per minute"):
            await limiter.admit("t", "k3")
        await limiter.admit("other", "k4")  # other tenants are not affected

    asyncio.run(main())


def test_tokens_are_charged_after_and_refuse_when_spent() -> None:
    limiter = Limiter(_limits(per_tenant={"tokens_per_minute": 100}))

    async def main() -> None:
        await limiter.admit("t", "k")
        await limiter.charge("t", "k", 60)
        await limiter.admit("t", "k")  # 40 left: admitted
        await limiter.charge("t", "k", 60)  # one reply may overshoot
        with pytest.raises(RateLimitError, match="100 LLM tokens per minute") as err:
            await limiter.admit("t", "k")
        assert 1 <= err.value.retry_after <= 60
        with pytest.raises(RateLimitError):
            await limiter.admit_tokens("t")  # an agent's LLM call too
        await limiter.admit("t", "k", uses_llm=False)  # a request without LLM calls passes
        await limiter.admit("u", "k")

    asyncio.run(main())


def test_overrides_per_tenant_and_key() -> None:
    limiter = Limiter(
        _limits(
            per_tenant={"requests_per_minute": 100},
            tenants={"small": {"requests_per_minute": 1}},
            keys={"tiny-key": {"requests_per_minute": 1}},
        )
    )

    async def main() -> None:
        await limiter.admit("small", "a")
        with pytest.raises(RateLimitError, match="tenant"):
            await limiter.admit("small", "b")
        await limiter.admit("big", "tiny-key")
        with pytest.raises(RateLimitError, match="key"):
            await limiter.admit("big", "tiny-key")

    asyncio.run(main())


def test_concurrency_per_tenant() -> None:
    limiter = Limiter(_limits(per_tenant={"concurrency": 2}))
    limiter.acquire("t")
    limiter.acquire("t")
    with pytest.raises(RateLimitError, match="2 requests in flight"):
        limiter.acquire("t")
    limiter.acquire("u")
    limiter.release("t")
    limiter.acquire("t")  # a slot came back
    for tenant in ("t", "t", "u"):
        limiter.release(tenant)
    assert limiter._in_flight == {}


def test_providers_quota() -> None:
    config = GatewayAppConfig.model_validate(
        {
            "providers": [
                {
                    "name": "p",
                    "base_url": "http://127.0.0.1:1/v1",
                    "rate_limit": {"requests_per_minute": 1},
                },
            ]
        }
    )
    limiter = Limiter(config.rate_limits, config.providers)

    async def main() -> None:
        await limiter.provider_admit("p")
        with pytest.raises(RateLimitError, match="provider 'p'"):
            await limiter.provider_admit("p")
        await limiter.provider_admit("unlimited")

    asyncio.run(main())


def test_unreachable_storage_counts_in_memory_refuses_or_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Redis unreachable: the default counts in the replica's memory (the limit still
    holds); `refuse` answers 503; `allow` lets requests through uncounted."""
    monkeypatch.setenv("RUNTIME_TEST_REDIS", f"redis://127.0.0.1:{free_port()}/0")
    limits = {"storage_url_env": "RUNTIME_TEST_REDIS", "per_tenant": {"requests_per_minute": 1}}
    memory = Limiter(_limits(**limits))  # the default
    open_ = Limiter(_limits(**limits, on_storage_failure="allow"))
    closed = Limiter(_limits(**limits, on_storage_failure="refuse"))
    assert "redis" not in repr(open_)  # the URL may carry a password

    async def main() -> None:
        await memory.admit("t", "k")
        with pytest.raises(RateLimitError, match="1 requests per minute"):
            await memory.admit("t", "k")  # counted here while Redis is away
        await memory.charge("t", "k", 10)
        await open_.admit("t", "k")
        await open_.admit("t", "k")  # not counted, let through
        with pytest.raises(LimiterUnavailableError, match="unreachable"):
            await closed.admit("t", "k")

    asyncio.run(main())


def test_fail_open_names_its_replacement() -> None:
    with pytest.raises(ValueError, match="on_storage_failure: allow"):
        _limits(fail_open=True)


def _blackholed(monkeypatch: pytest.MonkeyPatch, **limits: Any) -> tuple[Any, Limiter]:
    """A port that takes connections and never answers (a blackholed Redis), and a
    limiter whose storage it is; close the socket when done."""
    import socket

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(64)  # the kernel completes connections; nobody ever reads or answers
    monkeypatch.setenv("RUNTIME_TEST_REDIS", f"redis://127.0.0.1:{hole.getsockname()[1]}/0")
    config = _limits(
        storage_url_env="RUNTIME_TEST_REDIS", per_tenant={"requests_per_minute": 5}, **limits
    )
    return hole, Limiter(config)


def test_a_blackholed_storage_costs_one_short_wait_then_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A port that takes connections and never answers (a blackholed Redis, not a
    refused one): the first check waits `storage_timeout_s`, then the circuit answers
    at once; neither lets the request through (`refuse`). Before: each check waited on
    redis-py's defaults (about a minute) and then let it through."""
    hole, limiter = _blackholed(
        monkeypatch, storage_timeout_s=0.2, storage_open_s=30, on_storage_failure="refuse"
    )

    async def main() -> None:
        async with asyncio.timeout(10):  # a hang guard, not a speed goal
            with pytest.raises(LimiterUnavailableError, match="TimeoutError"):
                await limiter.admit("t", "k")
            assert limiter.breaker.state == "open"
            with pytest.raises(LimiterUnavailableError, match="circuit open"):
                await limiter.admit("t", "k")
            await limiter.charge("t", "k", 10)  # counting an answer never raises

    try:
        asyncio.run(main())
    finally:
        hole.close()


def test_a_cancelled_probe_frees_the_circuit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The half-open circuit lets one probe through; a probe cancelled (its client left)
    must free that slot, or every later check is refused for good."""
    hole, limiter = _blackholed(monkeypatch, storage_timeout_s=5, storage_open_s=0.1)
    limiter.breaker.record_failure()  # opened; half-open 0.1 s later

    async def main() -> None:
        await asyncio.sleep(0.2)
        probe = asyncio.create_task(limiter.admit("t", "k"))
        await asyncio.sleep(0.1)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert limiter.breaker.allow()  # the next check may probe again

    try:
        asyncio.run(main())
    finally:
        hole.close()


def test_storage_url_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_TEST_REDIS", "memcached://127.0.0.1:1")
    with pytest.raises(ValueError, match="redis://"):
        Limiter(_limits(storage_url_env="RUNTIME_TEST_REDIS"))
    monkeypatch.delenv("RUNTIME_TEST_REDIS")
    with pytest.raises(Exception, match="RUNTIME_TEST_REDIS"):
        Limiter(_limits(storage_url_env="RUNTIME_TEST_REDIS"))
