"""New local Ray clusters as the runtime starts them (``python -m runtime run``, the
tests, the benchmarks): on the loopback address only, with Ray's token auth on.

Two things protect a local cluster, and each covers what the other cannot:

- **Loopback.** Ray binds its services to the node's IP address: with ``127.0.0.1``
  the raylet, the object manager, the dashboard agent, the metrics port and the
  Serve proxy's address are the machine's own. Some of Ray 2.60's gRPC servers still
  listen on every interface whatever the node IP; those are what the token is for.
- **Token auth** (``RAY_AUTH_MODE=token``): every Ray RPC and HTTP entry point asks for
  the cluster's token. A local cluster uses Ray's own token file (``~/.ray/auth_token``,
  made on first use), or ``$RAY_AUTH_TOKEN`` / ``$RAY_AUTH_TOKEN_PATH`` when set, so
  that Ray's CLI in another shell (``serve status``, ``ray job submit``) is let in.

Starting without auth takes an explicit ``allow_insecure`` (``runtime run
--insecure-no-ray-auth``): a shell that exported ``RAY_AUTH_MODE=disabled`` must not
quietly turn ``make run`` into a cluster anyone on the network can run code on (the
ShadowRay class of attack, CVE-2023-48022). docs/security.md lists every port.
"""

from __future__ import annotations

import os
from typing import Any

#: The one address local clusters use.
LOOPBACK = "127.0.0.1"
AUTH_MODE = "RAY_AUTH_MODE"

INSECURE_WARNING = (
    "WARNING: Ray's token auth is off (RAY_AUTH_MODE=disabled, --insecure-no-ray-auth). "
    "Ray's ports that listen on every interface then run code for anyone who reaches "
    "them (CVE-2023-48022). Use this only on a machine no one else can reach."
)


class InsecureClusterError(RuntimeError):
    """The environment turns Ray's auth off and the caller did not allow it."""


def auth_env(allow_insecure: bool = False) -> dict[str, str]:
    """The auth variables a new local cluster starts with (set them before Ray starts:
    its processes inherit them). Raises InsecureClusterError when the environment says
    ``RAY_AUTH_MODE=disabled`` and ``allow_insecure`` is false."""
    mode = os.environ.get(AUTH_MODE, "token").strip().lower()
    if mode == "disabled":
        if not allow_insecure:
            raise InsecureClusterError(
                f"{AUTH_MODE}=disabled is set in this environment: a local cluster without "
                "Ray's token auth runs code for anyone who reaches its ports. Unset it, or "
                "pass --insecure-no-ray-auth if you mean it."
            )
        return {AUTH_MODE: "disabled"}
    if mode != "token":
        raise InsecureClusterError(f"{AUTH_MODE}={mode!r}: local clusters start with 'token'")
    return {AUTH_MODE: "token"}


def node_args() -> dict[str, Any]:
    """Keyword arguments of ``ray.cluster_utils.Cluster`` nodes for loopback only."""
    return {"node_ip_address": LOOPBACK}


def init(allow_insecure: bool = False, **kwargs: Any) -> Any:
    """``ray.init`` of a new local cluster on loopback with token auth on (``kwargs``
    go to ``ray.init``)."""
    import ray

    os.environ.update(auth_env(allow_insecure))
    return ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)
