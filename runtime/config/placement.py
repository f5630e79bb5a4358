"""Ray node labels that place replicas (docs/autoscaling.md: Placement).

KubeRay worker groups carry ``worker-kind: cpu|gpu`` and the head none (it runs no
replicas: ``num-cpus: 0``). The builders place replicas by that label: agent and
gateway replicas on ``cpu`` workers; LLM replicas on ``gpu`` workers with a GPU per
engine rank (``args.placement``, the default with ``accelerator: gpu``). A serve config
that sets ``ray_actor_options`` replaces the builder's, so the config check requires the
label there too. The embedded default (``serve_configs/local.yaml``) runs on one plain
Ray node, as Ray's own ``serve run`` starts it: every application there says
``placement: any`` (no label).
"""

from typing import Literal

WORKER_KIND = "worker-kind"
CPU_WORKER = {WORKER_KIND: "cpu"}
GPU_WORKER = {WORKER_KIND: "gpu"}

#: Where agent and gateway replicas run: CPU workers (the label), or any node.
CpuPlacement = Literal["cpu-worker", "any"]


#: The ``placement`` field's description in the gateway's and the agents' args.
CPU_PLACEMENT_DOC = (
    f"Which Ray nodes run the replicas: cpu-worker (node label `{WORKER_KIND}: cpu`, as "
    "KubeRay's CPU worker group carries), or any (no label: one plain Ray node, as "
    "`serve run` or `ray start --head` gives)."
)


def selector(placement: CpuPlacement) -> dict[str, str]:
    """The label selector of a replica's ``ray_actor_options`` for ``placement``."""
    return dict(CPU_WORKER) if placement == "cpu-worker" else {}
