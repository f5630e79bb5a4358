"""Ray node labels that place replicas (docs/agents.md, shared ARCHITECTURE: Placement).

KubeRay worker groups carry ``worker-kind: cpu|gpu``; agent (and gateway) replicas
select ``cpu`` through ``ray_actor_options.label_selector`` in the serve config. A
local cluster started by ``python -m runtime run`` is one node that plays the CPU
worker.
"""

WORKER_KIND = "worker-kind"
CPU_WORKER = {WORKER_KIND: "cpu"}
