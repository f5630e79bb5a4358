"""Replica actors of a deployment on the test cluster: where they run, their engine
processes, and killing them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Replica:
    name: str
    node_id: str


def replicas(app: str, deployment: str = "AgentServer") -> list[Replica]:
    """The live replica actors of a deployment, from the GCS actor table (Ray's state
    API needs the dashboard, which the test cluster does not run)."""
    from ray._private import state

    table = state.actors(actor_state_name="ALIVE")
    return [
        Replica(name=a["Name"], node_id=a["Address"]["NodeID"])
        for a in table.values()
        if a["ActorClassName"] == f"ServeReplica:{app}:{deployment}"
    ]


def kill(app: str, deployment: str = "AgentServer", count: int | None = None) -> list[str]:
    """Kill ``count`` (default all) live replicas of a deployment, hard (no restart by
    Ray; Serve replaces them); their names."""
    import ray

    killed = []
    for replica in replicas(app, deployment)[:count]:
        ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)
        killed.append(replica.name)
    return killed


def kill_replicas(app: str) -> int:
    """Kill every replica of the app's AgentServer; how many."""
    return len(kill(app))


def replica_and_engine(app: str) -> tuple[Any, Any]:
    """The process of the app's LLM replica and of its vLLM engine (psutil processes)."""
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        if f"ServeReplica:{app}:LLMServer" in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                engines = [c for c in proc.children() if "EngineCore" in " ".join(c.cmdline())]
                if engines:
                    return proc, engines[0]
    raise AssertionError(f"no replica with an engine process for app {app!r}")
