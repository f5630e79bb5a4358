"""The one registry of environment variables the runtime reads.

Nothing else in the package reads ``os.environ`` for its own settings. The
variables written for Ray and vLLM processes (``serve_env``, ``runtime.llm``)
are set before those processes start. (``runtime.telemetry.redact`` scans the
environment for the *values* of secret-named variables, to remove them from logs;
OpenTelemetry's SDK reads its own ``OTEL_*`` variables.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Where converted and generated models live, and vLLM's compile cache.
RUNTIME_CACHE_DIR = "RUNTIME_CACHE_DIR"

#: Ray Serve's switch for HAProxy with direct ingress (read by every Ray process at start).
SERVE_HAPROXY = "RAY_SERVE_ENABLE_HA_PROXY"
#: Ray Serve's throughput mode: user code on the replica's main event loop, less
#: per-request logging. Streaming LLM replicas gain most (docs/llm-serving.md).
SERVE_THROUGHPUT_OPTIMIZED = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
#: Throughput mode would also move handles' routers onto the caller's event loop,
#: which breaks ``handle.remote().result()`` from synchronous code: kept separate.
SERVE_ROUTER_IN_SEPARATE_LOOP = "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"
#: Throughput mode turns on direct ingress, whose replicas drain for at least 30 s
#: on shutdown so that load balancers can deregister them. Nothing in front of a
#: local cluster needs that: Ctrl-C should not take half a minute.
SERVE_DIRECT_INGRESS_DRAIN_S = "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"

#: Where ``runtime.connect()`` sends HTTP when no URL is given and no Ray cluster is
#: connected: the Serve endpoint (or, with issue 4's gateway, the gateway).
RUNTIME_URL = "RUNTIME_URL"
DEFAULT_URL = "http://127.0.0.1:8000"


def runtime_url() -> str:
    return os.environ.get(RUNTIME_URL) or DEFAULT_URL


def ray_address() -> str | None:
    """``$RAY_ADDRESS``: set inside a Ray cluster's jobs, or by the user."""
    return os.environ.get("RAY_ADDRESS") or None


def serve_env(ingress: str = "proxy") -> dict[str, str]:
    """Ray Serve settings for clusters the runtime starts (``run``, tests, benchmarks).

    Serve reads them once per process, so they must be in the environment before
    Ray starts; values already set there win.
    """
    env = {
        SERVE_THROUGHPUT_OPTIMIZED: "1",
        SERVE_ROUTER_IN_SEPARATE_LOOP: "1",
        SERVE_DIRECT_INGRESS_DRAIN_S: "1",
    }
    if ingress == "haproxy":
        env[SERVE_HAPROXY] = "1"
    return {key: os.environ.get(key, value) for key, value in env.items()}


#: Ray Serve 2.60's proxies read their tracing settings from these variables only (the
#: serve config's ``tracing_config`` reaches the replicas, not the proxies).
SERVE_TRACING_EXPORTER = "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH"
SERVE_TRACING_SAMPLING = "RAY_SERVE_TRACING_SAMPLING_RATIO"


def proxy_tracing_env(tracing_config: Any) -> dict[str, str]:
    """The proxies' tracing variables for a serve config's ``tracing_config`` (empty
    when tracing is off), so that they trace as the replicas do and follow a client's
    ``traceparent``. Set before Ray starts."""
    if tracing_config is None or not tracing_config.enabled:
        return {}
    return {
        SERVE_TRACING_EXPORTER: tracing_config.exporter_import_path
        or "ray.serve._private.tracing_utils:default_tracing_exporter",  # Serve's default
        SERVE_TRACING_SAMPLING: str(tracing_config.sampling_ratio),
    }


def explicit_cache_dir() -> Path | None:
    """``$RUNTIME_CACHE_DIR`` when it is set."""
    explicit = os.environ.get(RUNTIME_CACHE_DIR)
    return Path(explicit).expanduser().resolve() if explicit else None


def cache_dir() -> Path:
    """The runtime's cache folder: ``$RUNTIME_CACHE_DIR``, else the user's cache."""
    explicit = explicit_cache_dir()
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-runtime"


#: The local gateway's API key (``python -m runtime run`` generates one when unset).
RUNTIME_API_KEY = "RUNTIME_API_KEY"


def optional(name: str) -> str | None:
    """A variable the config names, when set; its value is never logged."""
    return os.environ.get(name) or None


def required(name: str) -> str:
    """A variable the config names (e.g. a DSN's ``dsn_env``); its value is never logged."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"environment variable {name} is not set (the serve config names it)")
    return value


#: ``1``: prompts and completions may appear in log records and span attributes
#: (redacted of secrets still). Unset or anything else: only their sizes do.
RUNTIME_LOG_CONTENT = "RUNTIME_LOG_CONTENT"


def log_content() -> bool:
    return os.environ.get(RUNTIME_LOG_CONTENT, "").strip().lower() in ("1", "true", "yes")
