"""Rate limits of the gateway (``runtime.routing.limits``) shared through the
session's real Redis on loopback: two limiters stand for two gateway replicas (in
memory: tests/unit/test_gateway_limits.py; two real replicas:
tests/cluster/test_gateway_routing.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.config.gateway import RateLimitConfig
from runtime.errors import RateLimitError
from runtime.routing.limits import Limiter


def _limits(**data: Any) -> RateLimitConfig:
    return RateLimitConfig.model_validate(data)


def test_redis_shares_the_limits(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_TEST_REDIS", redis_url)
    shared = {"requests_per_minute": 5, "tokens_per_minute": 50}
    # A generous timeout: on a busy machine the default's half second can pass, and
    # each replica would count in its own memory (tested in test_chaos), not share.
    limits = _limits(
        storage_url_env="RUNTIME_TEST_REDIS", storage_timeout_s=5, tenants={"shared": shared}
    )
    one, two = Limiter(limits), Limiter(limits)  # two gateway replicas

    async def main() -> list[bool]:
        admitted = []
        for i in range(8):
            try:
                await (one if i % 2 else two).admit("shared", f"k{i}")
                admitted.append(True)
            except RateLimitError:
                admitted.append(False)
        await one.charge("other-shared", "k", 10)
        await two.charge("shared", "k", 50)
        with pytest.raises(RateLimitError, match="token"):
            await one.admit_tokens("shared")
        return admitted

    assert asyncio.run(main()) == [True] * 5 + [False] * 3
    import redis

    keys = redis.Redis.from_url(redis_url).keys("runtime*")
    assert keys and any(b"shared" in k for k in keys)
