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
import secrets
from pathlib import Path
from typing import Any

#: The one address local clusters use.
LOOPBACK = "127.0.0.1"
AUTH_MODE = "RAY_AUTH_MODE"
#: Ray replaces a node IP of 127.0.0.1 given to ``ray.init`` by the machine's address
#: unless clusters are "single machine" (as Ray makes them on macOS and Windows): this
#: variable, read by every Ray process, makes them so on Linux too.
SINGLE_MACHINE = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

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


def _token_file() -> None:
    """Ray's default token file, made (readable by its owner only) when no token is
    given: Ray makes it readable by everyone on the machine."""
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return
    path = Path.home() / ".ray" / "auth_token"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    path.chmod(0o600)


def node_args() -> dict[str, Any]:
    """Keyword arguments of ``ray.cluster_utils.Cluster`` nodes for loopback only."""
    return {"node_ip_address": LOOPBACK}


def init(allow_insecure: bool = False, **kwargs: Any) -> Any:
    """``ray.init`` of a new local cluster on loopback with token auth on (``kwargs``
    go to ``ray.init``)."""
    os.environ.update(SINGLE_MACHINE)
    import ray
    from ray._private import ray_constants
    from ray._raylet import Config  # type: ignore[attr-defined]  # Cython, no stubs

    ray_constants.ENABLE_RAY_CLUSTER = False  # read once, when Ray was imported
    os.environ.update(auth_env(allow_insecure))
    _token_file()
    # Ray caches its settings when it is imported: read the mode again (as Ray itself
    # does when it turns token auth on), so that ray.init makes the token file when
    # there is none, as it does for a cluster whose mode was set before the import.
    Config.initialize("")
    return ray.init(address="local", _node_ip_address=LOOPBACK, **kwargs)


def reap_orphan_engines() -> int:
    """Kill vLLM engine processes of this user whose replica is gone (their parent is
    init): a replica killed hard leaves its engine running, holding gigabytes and its
    ports. Called when a local cluster stops; the number killed."""
    import psutil

    killed = 0
    for proc in psutil.process_iter(["name", "cmdline", "ppid", "uids"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [proc.info["name"] or ""])
            mine = proc.info["uids"] is not None and proc.info["uids"].real == os.getuid()
            if mine and proc.info["ppid"] == 1 and cmd.startswith("VLLM::EngineCore"):
                proc.kill()
                killed += 1
        except psutil.Error:
            continue
    return killed
