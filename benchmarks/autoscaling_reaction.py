"""Reaction to a step in load: the runtime's agent policy against Serve's default policy.

One local Ray cluster (the node labelled ``worker-kind: cpu``), two agent applications
with the same scripted agent (each turn waits 1 s: an agent waiting on its LLM; four
turns at a time per replica, so that more wait for a replica), both
``min_replicas: 1, max_replicas: 3``:

- ``runtime``: ``runtime.autoscaling:AgentPolicy`` (4 turns per replica, up after 1 s,
  metrics every 0.5 s over 2 s; the knobs the docs recommend for agents);
- ``serve-default``: Serve's default policy at the same target
  (``target_ongoing_requests: 4``) with its default delays and metrics interval.

Each, in turn (not at the same time: they would share the two cores): 1 client for
10 s, then a step to 12 clients for ``--step-s`` seconds, each sending turns one after
another through deployment handles. Measured from the step: the time to the scaling
decision (Serve starts a replica), to the new replica serving (running), and turn
latency over time. Results: JSON and a PNG plot under ``benchmarks/results/``.

    .venv/bin/python benchmarks/autoscaling_reaction.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

from common import free_port  # noqa: E402 (benchmarks/common.py)

from runtime import _env  # noqa: E402

AGENT = {
    "name": "worker",
    "factory": "runtime.agents.examples:assistant",
    "llm": {"kind": "scripted", "rules": [{"steps": [{"answer": "ok", "delay_s": 1.0}]}]},
    "budgets": {"max_steps": 4, "max_tokens": 1000, "max_seconds": 60},
    "busy": "reject",
}
POLICIES: dict[str, dict[str, Any]] = {
    "runtime": {
        "min_replicas": 1, "max_replicas": 3, "metrics_interval_s": 0.5,
        "look_back_period_s": 2, "upscale_delay_s": 0, "downscale_delay_s": 0,
        "policy": {"policy_function": "runtime.autoscaling:AgentPolicy",
                   "policy_kwargs": {"target_turns_per_replica": 4, "upscale_delay_s": 1,
                                     "downscale_delay_s": 10}},
    },
    "serve-default": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4},
}  # fmt: skip


def app(name: str, scaling: dict[str, Any], store: Path) -> dict[str, Any]:
    from runtime.config.placement import CPU_WORKER

    return {
        "name": name,
        "route_prefix": None,
        "import_path": "runtime.apps:build_agent_app",
        "args": {"agents": [AGENT], "sessions": {"store": {"kind": "sqlite",
                                                            "path": str(store)}}},
        "deployments": [{"name": "AgentServer", "autoscaling_config": scaling,
                         # Four turns at a time per replica: more wait for a replica, so
                         # the replica count shows in the latency.
                         "max_ongoing_requests": 4,
                         "ray_actor_options": {"num_cpus": 0.1, "label_selector": CPU_WORKER}}],
    }  # fmt: skip


def replica_counts(name: str) -> tuple[int, int]:
    from ray import serve

    states = serve.status().applications[name].deployments["AgentServer"].replica_states
    return states.get("RUNNING", 0), states.get("STARTING", 0) + states.get("RUNNING", 0)


def run_phase(name: str, base_s: float, step_s: float, clients: int) -> dict[str, Any]:
    import runtime

    agent = runtime.connect(app=name).agent("worker")
    sessions = [agent.session() for _ in range(clients)]
    turns: list[tuple[float, float]] = []  # (start relative to the step, latency)
    samples: list[tuple[float, int, int]] = []
    active = threading.Semaphore(0)
    stop = threading.Event()
    started = time.monotonic()
    step_at = started + base_s

    def client(session: Any, first: bool) -> None:
        if not first:
            active.acquire()  # joins at the step
        while not stop.is_set():
            t0 = time.monotonic()
            session.invoke("go")
            turns.append((t0 - step_at, time.monotonic() - t0))

    threads = [threading.Thread(target=client, args=(s, i == 0)) for i, s in enumerate(sessions)]
    for t in threads:
        t.start()
    stepped = False
    end = step_at + step_s
    while time.monotonic() < end:
        now = time.monotonic()
        if not stepped and now >= step_at:
            for _ in range(clients - 1):
                active.release()
            stepped = True
        running, total = replica_counts(name)
        samples.append((now - step_at, running, total))
        time.sleep(0.25)
    stop.set()
    for t in threads:
        t.join(timeout=30)

    def first_time(index: int) -> float | None:
        found = next((t for t, *c in samples if t >= 0 and c[index] > 1), None)
        return None if found is None else round(found, 2)

    during = [lat for t, lat in turns if t >= 0]
    before = [lat for t, lat in turns if t < 0]
    return {
        "decision_s": first_time(1),
        "serving_s": first_time(0),
        "max_replicas_reached": max(c[1] for c in samples),
        "turn_p50_before_step_s": round(statistics.median(before), 3) if before else None,
        "turn_p50_after_step_s": round(statistics.median(during), 3) if during else None,
        "turn_p95_after_step_s": round(sorted(during)[int(0.95 * (len(during) - 1))], 3)
        if during
        else None,
        "turns": turns,
        "samples": samples,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, phase in results["policies"].items():
        t = [s[0] for s in phase["samples"]]
        top.step(t, [s[2] for s in phase["samples"]], where="post", label=f"{name}: decided")
        top.step(t, [s[1] for s in phase["samples"]], where="post", linestyle="--",
                 label=f"{name}: running")  # fmt: skip
        window: dict[int, list[float]] = {}
        for start, latency in phase["turns"]:
            window.setdefault(int(start // 2) * 2, []).append(latency)
        xs = sorted(window)
        bottom.plot(xs, [statistics.median(window[x]) for x in xs], marker="o", label=name)
    top.set_ylabel("replicas")
    top.legend(fontsize=8)
    top.set_title("Agent deployment: a step from 1 to 12 clients at t = 0")
    bottom.set_ylabel("turn latency p50 (s, 2 s bins)")
    bottom.set_xlabel("seconds from the step")
    bottom.legend(fontsize=8)
    for ax in (top, bottom):
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-s", type=float, default=10)
    parser.add_argument("--step-s", type=float, default=60)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    ns = parser.parse_args()

    import ray
    from ray import serve

    from runtime.config.placement import CPU_WORKER
    from runtime.deploy import deploy_config

    os.environ.update(_env.serve_env())
    tmp = Path(tempfile.mkdtemp(prefix="autoscaling-bench-"))
    ray.init(address="local", include_dashboard=False, log_to_driver=False, labels=CPU_WORKER)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "ray": ray.__version__},
        "load": {"base_s": ns.base_s, "step_s": ns.step_s, "clients": ns.clients,
                 "turn_s": 1.0},
        "policies": {},
    }  # fmt: skip
    try:
        for name, scaling in POLICIES.items():
            config = {"proxy_location": "HeadOnly",
                      "http_options": {"host": "127.0.0.1", "port": free_port()},
                      "applications": [app(name, scaling, tmp / f"{name}.sqlite")]}  # fmt: skip
            deploy_config(config, source="benchmark", timeout_s=300, wait_for_http=False)
            print(f"[{name}] step load", flush=True)
            results["policies"][name] = run_phase(name, ns.base_s, ns.step_s, ns.clients)
            serve.delete(name)
    finally:
        serve.shutdown()
        ray.shutdown()
    ns.out.mkdir(parents=True, exist_ok=True)
    plot(results, ns.out / "autoscaling_reaction.png")
    (ns.out / "autoscaling_reaction.json").write_text(json.dumps(results) + "\n")
    (ns.out / "autoscaling_reaction.md").write_text(render(results))
    print(render(results))
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Autoscaling reaction to a load step (benchmarks/autoscaling_reaction.py)",
        "",
        f"Machine: {results['machine']}; load: {results['load']}.",
        "",
        "| policy | decision after step (s) | new replica serving (s) | max replicas "
        "| turn p50 before (s) | turn p50 after (s) | turn p95 after (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in results["policies"].items():
        lines.append(
            f"| {name} | {p['decision_s']} | {p['serving_s']} | {p['max_replicas_reached']} "
            f"| {p['turn_p50_before_step_s']} | {p['turn_p50_after_step_s']} "
            f"| {p['turn_p95_after_step_s']} |"
        )
    lines += ["", "![replicas and latency](autoscaling_reaction.png)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
