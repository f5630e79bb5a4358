"""The test process's environment, set on import: tests/conftest.py imports this module
before any test module, so it is in place before Ray or Serve is imported (Serve reads
its settings once per process, at import) and before any Ray cluster starts (its
processes inherit it: the replicas' traces endpoint, the gateway's local key).

``SPANS`` is the in-memory OTLP receiver (tests/support/otlp.py) that every replica of
the test cluster sends its spans to, started here so that none is lost.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from runtime import _env, local_ray
from tests.support.keys import API_KEY
from tests.support.net import free_port
from tests.support.otlp import SpanReceiver
from tests.support.paths import REPO
from tests.support.stack import TRACING

# Set before Ray starts, for every cluster the tests start (their processes inherit
# it): Ray's token auth on, with a token of this test run (runtime/local_ray.py).
os.environ.update(local_ray.auth_env())
os.environ.update(local_ray.SINGLE_MACHINE)
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))
# The Serve settings `python -m runtime run` starts its clusters with.
os.environ.update(_env.serve_env())


def _tracing_schema(config: dict[str, Any]) -> Any:
    from ray.serve.schema import TracingConfig

    return TracingConfig(**config)


SPANS = SpanReceiver(free_port())
os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = SPANS.endpoint
os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "500"  # ms between batches (5000 by default)
# Serve's throughput mode buffers 1000 log records per replica before writing them: the
# tests read the log files as they go (tests/cluster/test_redaction.py).
os.environ["RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE"] = "1"
# Serve's proxies read only these (as `python -m runtime run` sets them from the config).
os.environ.update(_env.proxy_tracing_env(_tracing_schema(TRACING)))
# The local key, as `python -m runtime run` passes it to the gateway.
os.environ[_env.RUNTIME_API_KEY] = API_KEY
