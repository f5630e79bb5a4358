"""External providers: a real vLLM OpenAI API server on loopback (tiny random model,
API key required) plays the provider; a fault-injecting proxy in front of it makes it
slow, failing or cut off (the circuit breaker and the backoff alone:
tests/unit/test_providers.py)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

import pytest

from runtime.errors import LLMError
from runtime.providers.client import ProviderClient, ProviderUnavailableError
from runtime.providers.fallback import FallbackChain
from tests.support.fault_proxy import FaultProxy
from tests.support.keys import PROVIDER_KEY, PROVIDER_KEY_ENV
from tests.support.net import free_port
from tests.support.providers import BODY, provider_config

API_KEY = PROVIDER_KEY
KEY_ENV = PROVIDER_KEY_ENV


@pytest.fixture
def faults(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> FaultProxy:
    monkeypatch.setenv(KEY_ENV, API_KEY)
    proxy.plan()
    proxy.connections = 0
    return proxy


def _run(client: ProviderClient, coro: Any) -> Any:
    async def main() -> Any:
        try:
            return await coro
        finally:
            await client.aclose()

    return asyncio.run(main())


async def _collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def test_chat_passes_through_with_the_clients_model_name(faults: FaultProxy) -> None:
    client = ProviderClient(provider_config(faults.port))
    reply = _run(client, client.chat(BODY))
    assert reply["model"] == "external-tiny"
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert reply["usage"]["completion_tokens"] > 0
    assert faults.connections == 1


def test_stream_passes_through(faults: FaultProxy) -> None:
    client = ProviderClient(provider_config(faults.port))
    chunks = _run(client, _collect(client.chat_stream({**BODY, "ignore_eos": True})))
    assert all(c["model"] == "external-tiny" for c in chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 8  # include_usage by default
    # The random model's tokens may decode to no text: count the token chunks.
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert len(deltas) >= 2 and all("content" in d or "role" in d for d in deltas)


@pytest.mark.parametrize("fault", ["500", "429", "drop"])
def test_retryable_failures_are_retried(faults: FaultProxy, fault: str) -> None:
    faults.plan(fault, fault)
    client = ProviderClient(provider_config(faults.port))
    reply = _run(client, client.chat(BODY))
    assert reply["choices"] and faults.connections == 3
    assert client.breaker.state == "closed"


def test_slow_answers_time_out_and_give_up(
    faults: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    faults.plan("delay:3", "delay:3")
    config = provider_config(faults.port, retries={"max_attempts": 2, "backoff_initial_s": 0.01})
    config = config.model_copy(
        update={"timeouts": config.timeouts.model_copy(update={"first_byte_s": 0.5})}
    )
    client = ProviderClient(config)
    with (
        caplog.at_level(logging.WARNING, logger="ray.serve"),
        pytest.raises(ProviderUnavailableError, match=r"2 attempt.*timed out") as err,
    ):
        _run(client, client.chat(BODY))
    assert err.value.status == 503 and faults.connections == 2
    assert API_KEY not in caplog.text and API_KEY not in str(err.value)


def test_a_bad_request_is_not_retried(faults: FaultProxy) -> None:
    client = ProviderClient(provider_config(faults.port))
    with pytest.raises(LLMError) as err:
        _run(client, client.chat({**BODY, "max_tokens": -1}))
    assert err.value.status == 400 and not isinstance(err.value, ProviderUnavailableError)
    assert faults.connections == 1 and client.breaker.state == "closed"


def test_a_wrong_key_is_a_401_that_does_not_echo_it(
    faults: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "sk-wrong-" + secrets.token_hex(12)
    monkeypatch.setenv(KEY_ENV, wrong)
    client = ProviderClient(provider_config(faults.port))
    with pytest.raises(LLMError) as err:
        _run(client, client.chat(BODY))
    assert err.value.status == 401 and faults.connections == 1
    for text in (str(err.value), repr(err.value), repr(client), str(err.value.to_body())):
        assert wrong not in text and API_KEY not in text


def test_the_circuit_opens_fails_fast_then_recovers(faults: FaultProxy) -> None:
    faults.plan("500", "500")
    client = ProviderClient(
        provider_config(
            faults.port,
            retries={"max_attempts": 1},
            circuit={"failure_threshold": 2, "open_s": 0.5},
        )
    )

    async def main() -> dict[str, Any]:
        for _ in range(2):
            with pytest.raises(ProviderUnavailableError, match="HTTP 500"):
                await client.chat(BODY)
        assert client.breaker.state == "open"
        with pytest.raises(ProviderUnavailableError, match="circuit is open"):
            await client.chat(BODY)
        assert faults.connections == 2  # the open circuit did not call the provider
        await asyncio.sleep(0.6)
        return await client.chat(BODY)  # the half-open probe succeeds

    assert _run(client, main())["choices"]
    assert client.breaker.state == "closed" and faults.connections == 3


def test_a_stream_is_retried_before_its_first_chunk(faults: FaultProxy) -> None:
    faults.plan("500")
    client = ProviderClient(provider_config(faults.port))
    chunks = _run(client, _collect(client.chat_stream(BODY)))
    assert chunks and faults.connections == 2


def test_a_stream_cut_off_midway_is_not_retried(faults: FaultProxy) -> None:
    faults.plan("cut:900")
    client = ProviderClient(provider_config(faults.port))
    received: list[dict[str, Any]] = []

    async def main() -> None:
        async for chunk in client.chat_stream({**BODY, "max_tokens": 64, "ignore_eos": True}):
            received.append(chunk)

    with pytest.raises(ProviderUnavailableError, match="stream"):
        _run(client, main())
    assert received and faults.connections == 1


def test_fallback_to_the_next_provider(faults: FaultProxy) -> None:
    dead = ProviderClient(provider_config(free_port(), name="dead", retries={"max_attempts": 2}))
    good = ProviderClient(provider_config(faults.port, name="good"))
    chain = FallbackChain([dead, good])

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        try:
            reply = await chain.chat(BODY)
            assert chain.last_target == "good"
            chain.last_target = None
            chunks = await _collect(chain.chat_stream(BODY))
            assert chain.last_target == "good"
            return reply, chunks
        finally:
            await dead.aclose()
            await good.aclose()

    reply, chunks = asyncio.run(main())
    assert reply["choices"] and chunks and faults.connections == 2


def test_no_fallback_on_a_bad_request(faults: FaultProxy) -> None:
    first = ProviderClient(provider_config(faults.port, name="first"))
    second = ProviderClient(provider_config(free_port(), name="second"))
    chain = FallbackChain([first, second])
    with pytest.raises(LLMError) as err:
        asyncio.run(chain.chat({**BODY, "max_tokens": -1}))
    assert err.value.status == 400 and chain.last_target is None
    assert second.breaker.state == "closed"  # never called
