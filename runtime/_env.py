"""The one registry of environment variables the runtime reads.

Nothing else in the package reads ``os.environ`` for its own settings; the
vLLM variables set for a replica are written (not read) by ``runtime.llm``.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Where converted and generated models live, and vLLM's compile cache.
RUNTIME_CACHE_DIR = "RUNTIME_CACHE_DIR"


#: Ray Serve's switch for HAProxy with direct ingress (read by every Ray process at start).
SERVE_HAPROXY = "RAY_SERVE_ENABLE_HA_PROXY"


def cache_dir() -> Path:
    """The runtime's cache folder: ``$RUNTIME_CACHE_DIR``, else the user's cache."""
    explicit = os.environ.get(RUNTIME_CACHE_DIR)
    if explicit:
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent-runtime"


def in_ci() -> bool:
    """True under CI (``CI=true``), where a missing server fails a test instead of skipping."""
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}
