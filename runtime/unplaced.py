"""Serve replicas that no node of the cluster can host, and why.

Ray keeps an actor that fits no node pending for ever (``ray status`` counts it as
infeasible demand) and Serve's status says only DEPLOYING. The deploy
(:func:`runtime.deploy.wait_until_running`) asks the GCS instead: each replica actor
waiting to be created, what it asks for (resources, node labels), and whether any
live node could ever host it.

    >>> offered = nodes()  # doctest: +SKIP
    >>> for replica in unplaceable(offered):  # doctest: +SKIP
    ...     print(replica.explain(offered))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Resources every node has and no replica config names: left out of explanations.
_QUIET = ("memory", "object_store_memory", "node:", "accelerator_type:")


@dataclass(frozen=True)
class Node:
    address: str
    resources: dict[str, float]  # totals, not what is free now
    labels: dict[str, str]

    def describe(self) -> str:
        shown = {k: v for k, v in self.resources.items() if not k.startswith(_QUIET)}
        labels = {k: v for k, v in self.labels.items() if not k.startswith("ray.io/")}
        return f"{self.address} ({_amounts(shown) or 'no resources'}; labels {labels or '{}'})"


@dataclass(frozen=True)
class Pending:
    """A Serve replica actor that Ray has not placed yet."""

    app: str
    deployment: str
    asks: dict[str, float]
    selector: dict[str, str]

    def fits(self, node: Node) -> bool:
        """Could ``node`` host it, were nothing else running there?"""
        has = all(node.resources.get(k, 0.0) >= v for k, v in self.asks.items())
        return has and all(_matches(node.labels.get(k), v) for k, v in self.selector.items())

    def explain(self, offered: list[Node]) -> str:
        wants = _amounts(self.asks) or "no resources"
        if self.selector:
            wants += f" on a node labelled {self.selector}"
        listing = "; ".join(n.describe() for n in offered) or "none"
        return (
            f"deployment {self.deployment!r} of application {self.app!r} asks for {wants}, "
            f"and no live node offers that. The nodes: {listing}"
        )


def _amounts(resources: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()))


def _matches(value: str | None, wanted: str) -> bool:
    """Ray's label selector values: ``v``, ``!v``, ``in(a,b)``, ``!in(a,b)``."""
    negate = wanted.startswith("!")
    wanted = wanted.removeprefix("!")
    if wanted.startswith("in(") and wanted.endswith(")"):
        hit = value in {v.strip() for v in wanted[3:-1].split(",")}
    else:
        hit = value == wanted
    return hit != negate


def nodes() -> list[Node]:
    """The cluster's live nodes (Ray must be initialized)."""
    import ray

    return [
        Node(n["NodeManagerAddress"], dict(n["Resources"]), dict(n.get("Labels") or {}))
        for n in ray.nodes()
        if n["Alive"]
    ]


def pending() -> list[Pending]:
    """Serve replica actors waiting to be created (outside placement groups, whose
    bundles Ray places instead)."""
    from ray._private import state
    from ray.core.generated import gcs_pb2

    table = state.state._connect_and_get_accessor().get_actor_table(None, "PENDING_CREATION")
    waiting = []
    for raw in table:
        actor: Any = gcs_pb2.ActorTableData.FromString(raw)
        kind, _, name = actor.class_name.partition(":")
        if kind != "ServeReplica" or name.count(":") != 1 or actor.placement_group_id:
            continue
        app, deployment = name.split(":")
        waiting.append(
            Pending(app, deployment, dict(actor.required_resources), dict(actor.label_selector))
        )
    return waiting


def unplaceable(offered: list[Node], apps: list[str] | None = None) -> list[Pending]:
    """Pending replicas (of ``apps``, default all) that fit none of the ``offered`` nodes."""
    return [
        p
        for p in pending()
        if (apps is None or p.app in apps) and not any(p.fits(n) for n in offered)
    ]
