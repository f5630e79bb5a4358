"""The tests' keys: the gateway's (made once per process, stored by hash in the test
gateway's config: ``stack.GATEWAY_KEYS``) and the external provider's.

The local key (tenant "local", every scope) reaches the gateway as `python -m runtime
run` passes it: in the environment Ray's processes inherit (``environment`` sets it).
"""

from __future__ import annotations

from runtime.gateway.auth import new_key

API_KEY = new_key()
KEY_B = new_key()  # tenant-b, every scope
KEY_REVOKED = new_key()
KEY_SCOPED = new_key()  # tenant-c: the tiny model and the `scripted` agent only
KEY_ONE_AT_A_TIME = new_key()  # tenant-d: one request in flight
KEY_THREE_PER_MINUTE = new_key()  # key "e" (tenant-e): three requests per minute
KEY_FEW_TOKENS = new_key()  # tenant-f: one LLM token per minute
#: The key of the external provider (vLLM's own server) the tests start.
PROVIDER_KEY = "sk-test-" + new_key()[3:]
PROVIDER_KEY_ENV = "RUNTIME_TEST_PROVIDER_KEY"
