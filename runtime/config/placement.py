"""Ray node labels that place replicas (docs/autoscaling.md: Placement).

KubeRay worker groups carry ``worker-kind: cpu|gpu`` and the head none (it runs no
replicas: ``num-cpus: 0``). The builders place replicas by that label: agent and
gateway replicas on ``cpu`` workers; LLM replicas on ``gpu`` workers with a GPU per
engine rank (``args.placement``, the default with ``accelerator: gpu``). A serve config
that sets ``ray_actor_options`` replaces the builder's, so the config check requires the
label there too. ``python -m runtime run`` starts one node that plays the CPU worker and
runs the CPU engine unlabelled (``placement: any``).
"""

WORKER_KIND = "worker-kind"
CPU_WORKER = {WORKER_KIND: "cpu"}
GPU_WORKER = {WORKER_KIND: "gpu"}
