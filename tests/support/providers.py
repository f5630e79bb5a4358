"""The external provider of the provider tests: a request body and the client config
for a provider on a loopback port (tests/unit/test_providers.py with nothing there,
tests/cluster/test_providers.py with vLLM's own server behind the fault proxy)."""

from __future__ import annotations

from typing import Any

from runtime.config.providers import ProviderConfig
from tests.support.keys import PROVIDER_KEY_ENV

BODY: dict[str, Any] = {
    "model": "external-tiny",
    "messages": [{"role": "user", "content": "Hello"}],
    "max_tokens": 8,
}


def provider_config(port: int, **overrides: Any) -> ProviderConfig:
    data: dict[str, Any] = {
        "name": "upstream",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "api_key_env": PROVIDER_KEY_ENV,
        "models": {"external-tiny": "tiny-random"},
        "timeouts": {"connect_s": 2, "first_byte_s": 10, "total_s": 30},
        "retries": {"max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05},
    }
    data.update(overrides)
    return ProviderConfig.model_validate(data)
