"""External providers without a server: the circuit breaker, the backoff, the config's
checks, and a chain whose every target is down (against vLLM's own server behind a
fault-injecting proxy: tests/cluster/test_providers.py)."""

from __future__ import annotations

import asyncio

import pytest

from runtime.providers.circuit import CircuitBreaker
from runtime.providers.client import ProviderClient, ProviderUnavailableError
from runtime.providers.fallback import FallbackChain
from tests.support.keys import PROVIDER_KEY, PROVIDER_KEY_ENV
from tests.support.net import free_port
from tests.support.providers import BODY, provider_config

API_KEY = PROVIDER_KEY
KEY_ENV = PROVIDER_KEY_ENV


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, open_s=10, clock=clock)
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_success()  # a success resets the count
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 9.9
    assert not breaker.allow() and breaker.retry_in() == pytest.approx(0.1)
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    breaker.record_failure()  # the probe failed: open again
    assert breaker.state == "open"
    clock.now = 20.0
    assert breaker.allow()
    breaker.abandon()  # a cancelled probe frees the slot
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"


def test_backoff_is_exponential_jittered_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    config = provider_config(1, retries={"backoff_initial_s": 0.5, "backoff_max_s": 3})
    client = ProviderClient(config, jitter=lambda: 1.0)
    assert [client._backoff(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert client._backoff(1, 2.5) == 2.5  # Retry-After is honoured ...
    assert client._backoff(1, 60) == 3.0  # ... up to backoff_max_s
    half = ProviderClient(config, jitter=lambda: 0.5)
    assert half._backoff(3, None) == 1.0
    asyncio.run(client.aclose())
    asyncio.run(half.aclose())


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="backoff_max_s"):
        provider_config(1, retries={"backoff_initial_s": 2, "backoff_max_s": 1})
    with pytest.raises(ValueError, match="base_url"):
        provider_config(1, base_url="ftp://x")
    with pytest.raises(ValueError, match="Extra inputs"):
        provider_config(1, api_key="sk-in-the-config")


def test_every_target_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    chain = FallbackChain(
        [
            ProviderClient(provider_config(free_port(), name=n, retries={"max_attempts": 1}))
            for n in ("a", "b")
        ]
    )
    with pytest.raises(ProviderUnavailableError, match=r"every target.*a: .*b: "):
        asyncio.run(chain.chat(BODY))
