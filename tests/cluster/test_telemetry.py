"""The W3C trace context a provider receives, in-process: each attempt's request to
vLLM's own server (behind the fault proxy) carries its own span (the other in-process
telemetry tests: tests/unit/test_telemetry.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.telemetry import tracing
from tests.support.spans import fresh as fresh_spans


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """This process's spans in memory (tests/support/spans.py), none of earlier tests'."""
    return fresh_spans()


def test_each_provider_attempt_sends_its_trace_context(proxy: Any, spans: Any) -> None:
    """A failed attempt and its retry: each request carries its own attempt's span."""
    from runtime.config.providers import ProviderConfig
    from runtime.providers.client import ProviderClient
    from tests.support.keys import PROVIDER_KEY, PROVIDER_KEY_ENV

    config = ProviderConfig.model_validate(
        {
            "name": "p",
            "base_url": f"http://127.0.0.1:{proxy.port}/v1",
            "api_key_env": PROVIDER_KEY_ENV,
            "retries": {"backoff_initial_s": 0.01},
        }
    )
    proxy.plan("500", "pass")
    proxy.heads.clear()

    async def main() -> dict[str, Any]:
        client = ProviderClient(config)
        try:
            with tracing.span("gateway"):
                return await client.chat(
                    {
                        "model": "tiny-random",
                        "max_tokens": 1,
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                )
        finally:
            await client.aclose()

    with pytest.MonkeyPatch.context() as env:
        env.setenv(PROVIDER_KEY_ENV, PROVIDER_KEY)
        assert asyncio.run(main())["choices"]
    attempts = [s for s in spans.get_finished_spans() if s.name == "provider.attempt"]
    assert len(attempts) == 2 and attempts[0].status.status_code.name == "ERROR"
    # W3C: version-trace id-parent span id-flags (sampled, and Python's random trace id).
    sent = [h["traceparent"].split("-") for h in proxy.heads]
    assert [(v, t, p) for v, t, p, _ in sent] == [
        ("00", f"{a.context.trace_id:032x}", f"{a.context.span_id:016x}") for a in attempts
    ]
    assert all(int(flags, 16) & 1 for *_, flags in sent)
