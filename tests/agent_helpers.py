"""Helpers of the agent tests: SDK clients over both transports, replica actors."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


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


def kill_replicas(app: str) -> int:
    """Kill every replica of the app's AgentServer (no restart by Ray; Serve replaces them)."""
    import ray

    killed = 0
    for replica in replicas(app):
        ray.kill(ray.get_actor(replica.name, namespace="serve"), no_restart=True)
        killed += 1
    return killed


def wait_for(
    predicate: Callable[[], bool], timeout_s: float = 30, what: str = "", interval_s: float = 0.05
) -> float:
    """Poll until ``predicate()`` holds; the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started
