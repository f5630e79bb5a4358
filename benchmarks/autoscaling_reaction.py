"""Reaction to a step in load: the runtime's policies against Serve's default policy.

``--deployment agents`` (the default). One local Ray cluster (the node labelled
``worker-kind: cpu``), two agent applications with the same scripted agent (each turn
waits 1 s: an agent waiting on its LLM; four turns at a time per replica, so that more
wait for a replica), both ``min_replicas: 1, max_replicas: 3``:

- ``runtime``: ``runtime.autoscaling:AgentPolicy`` (4 turns per replica, up after 1 s,
  metrics every 0.5 s over 2 s; the knobs the docs recommend for agents);
- ``serve-default``: Serve's default policy at the same target
  (``target_ongoing_requests: 4``) with its default delays and metrics interval.

Each, in turn (not at the same time: they would share the two cores): 1 client for
10 s, then a step to 12 clients for ``--step-s`` seconds, each sending turns one after
another through deployment handles. Measured from the step: the time to the scaling
decision (Serve starts a replica), to the new replica serving (running), and turn
latency over time. Results: JSON and a PNG plot under ``benchmarks/results/``.

``--deployment llm``: the same with two LLM applications (the tiny random model on the
CPU engine, 1 to 3 replicas), ``runtime.autoscaling:LLMPolicy`` (4 sequences per
replica) against Serve's default (``target_ongoing_requests: 4``); each client sends
chat completions of 64 tokens one after another (``..._llm.*`` results).

    .venv/bin/python benchmarks/autoscaling_reaction.py [--deployment llm]
"""

from __future__ import annotations

import argparse
import functools
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
        "min_replicas": 1,
        "max_replicas": 3,
        "metrics_interval_s": 0.5,
        "look_back_period_s": 2,
        "upscale_delay_s": 0,
        "downscale_delay_s": 0,
        "policy": {
            "policy_function": "runtime.autoscaling:AgentPolicy",
            "policy_kwargs": {
                "target_turns_per_replica": 4,
                "upscale_delay_s": 1,
                "downscale_delay_s": 10,
            },
        },
    },
    "serve-default": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4},
}
LLM_POLICIES: dict[str, dict[str, Any]] = {
    "runtime": {
        **POLICIES["runtime"],
        "policy": {
            "policy_function": "runtime.autoscaling:LLMPolicy",
            "policy_kwargs": {
                "target_ongoing_per_replica": 4,
                "upscale_delay_s": 1,
                "downscale_delay_s": 10,
            },
        },
    },
    "serve-default": POLICIES["serve-default"],
}
LLM_BODY = {
    "model": "tiny-random",
    "messages": [{"role": "user", "content": "Go on."}],
    "max_tokens": 64,
    "ignore_eos": True,
    "temperature": 0,
}


def llm_app(name: str, scaling: dict[str, Any], _store: Path) -> dict[str, Any]:
    return {
        "name": name,
        "route_prefix": None,
        "import_path": "runtime.apps:build_llm_app",
        "args": {
            "model": {"source": "tiny-random"},
            "num_cpus": 0.1,
            "engine": {"max_model_len": 256, "max_num_seqs": 16},
        },
        "deployments": [{"name": "LLMServer", "autoscaling_config": scaling}],
    }


def agent_clients(name: str, clients: int) -> list[Any]:
    import runtime

    agent = runtime.connect(app=name).agent("worker")
    return [functools.partial(agent.session().invoke, "go") for _ in range(clients)]


def llm_clients(name: str, clients: int) -> list[Any]:
    from ray import serve

    handle = serve.get_deployment_handle("LLMServer", app_name=name)
    return [lambda: handle.chat.remote(LLM_BODY).result() for _ in range(clients)]


def app(name: str, scaling: dict[str, Any], store: Path) -> dict[str, Any]:
    from runtime.config.placement import CPU_WORKER

    return {
        "name": name,
        "route_prefix": None,
        "import_path": "runtime.apps:build_agent_app",
        "args": {"agents": [AGENT], "sessions": {"store": {"kind": "sqlite", "path": str(store)}}},
        "deployments": [
            {
                "name": "AgentServer",
                "autoscaling_config": scaling,
                # Four turns at a time per replica: more wait for a replica, so
                # the replica count shows in the latency.
                "max_ongoing_requests": 4,
                "ray_actor_options": {"num_cpus": 0.1, "label_selector": CPU_WORKER},
            }
        ],
    }


#: --deployment -> (deployment name, policies, application, clients, result file stem).
KINDS: dict[str, tuple[str, dict[str, dict[str, Any]], Any, Any, str]] = {
    "agents": ("AgentServer", POLICIES, app, agent_clients, "autoscaling_reaction"),
    "llm": ("LLMServer", LLM_POLICIES, llm_app, llm_clients, "autoscaling_reaction_llm"),
}


def replica_counts(name: str, deployment: str) -> tuple[int, int]:
    from ray import serve

    states = serve.status().applications[name].deployments[deployment].replica_states
    return states.get("RUNNING", 0), states.get("STARTING", 0) + states.get("RUNNING", 0)


def run_phase(name: str, kind: str, base_s: float, step_s: float, clients: int) -> dict[str, Any]:
    deployment, _, _, make_clients, _ = KINDS[kind]
    calls = make_clients(name, clients)
    turns: list[tuple[float, float]] = []  # (start relative to the step, latency)
    samples: list[tuple[float, int, int]] = []
    active = threading.Semaphore(0)
    stop = threading.Event()
    started = time.monotonic()
    step_at = started + base_s

    def client(call: Any, first: bool) -> None:
        if not first:
            active.acquire()  # joins at the step
        while not stop.is_set():
            t0 = time.monotonic()
            call()
            turns.append((t0 - step_at, time.monotonic() - t0))

    threads = [threading.Thread(target=client, args=(c, i == 0)) for i, c in enumerate(calls)]
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
        running, total = replica_counts(name, deployment)
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


def plot(results: dict[str, Any], path: Path, what: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, phase in results["policies"].items():
        t = [s[0] for s in phase["samples"]]
        top.step(t, [s[2] for s in phase["samples"]], where="post", label=f"{name}: decided")
        top.step(
            t,
            [s[1] for s in phase["samples"]],
            where="post",
            linestyle="--",
            label=f"{name}: running",
        )
        window: dict[int, list[float]] = {}
        for start, latency in phase["turns"]:
            window.setdefault(int(start // 2) * 2, []).append(latency)
        xs = sorted(window)
        bottom.plot(xs, [statistics.median(window[x]) for x in xs], marker="o", label=name)
    top.set_ylabel("replicas")
    top.legend(fontsize=8)
    clients = results["load"]["clients"]
    top.set_title(f"{what} deployment: a step from 1 to {clients} clients at t = 0")
    bottom.set_ylabel("call latency p50 (s, 2 s bins)")
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
    parser.add_argument("--deployment", choices=sorted(KINDS), default="agents")
    ns = parser.parse_args()
    _, policies, build, _, stem = KINDS[ns.deployment]

    import ray
    from ray import serve

    from runtime import local_ray
    from runtime.config.placement import CPU_WORKER
    from runtime.deploy import deploy_config

    os.environ.update(_env.serve_env())
    tmp = Path(tempfile.mkdtemp(prefix="autoscaling-bench-"))
    local_ray.init(include_dashboard=False, log_to_driver=False, labels=CPU_WORKER)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
        },
        "load": {
            "deployment": ns.deployment,
            "base_s": ns.base_s,
            "step_s": ns.step_s,
            "clients": ns.clients,
            **({"turn_s": 1.0} if ns.deployment == "agents" else {"max_tokens": 64}),
        },
        "policies": {},
    }
    try:
        for name, scaling in policies.items():
            config = {
                "proxy_location": "HeadOnly",
                "http_options": {"host": "127.0.0.1", "port": free_port()},
                "applications": [build(name, scaling, tmp / f"{name}.sqlite")],
            }
            deploy_config(config, source="benchmark", timeout_s=300, wait_for_http=False)
            print(f"[{name}] step load", flush=True)
            results["policies"][name] = run_phase(
                name, ns.deployment, ns.base_s, ns.step_s, ns.clients
            )
            serve.delete(name)
    finally:
        serve.shutdown()
        ray.shutdown()
    ns.out.mkdir(parents=True, exist_ok=True)
    plot(results, ns.out / f"{stem}.png", "Agent" if ns.deployment == "agents" else "LLM")
    (ns.out / f"{stem}.json").write_text(json.dumps(results) + "\n")
    (ns.out / f"{stem}.md").write_text(render(results, stem))
    print(render(results, stem))
    return 0


def render(results: dict[str, Any], stem: str) -> str:
    lines = [
        "# Autoscaling reaction to a load step (benchmarks/autoscaling_reaction.py)",
        "",
        f"Machine: {results['machine']}; load: {results['load']}.",
        "",
        "| policy | decision after step (s) | new replica serving (s) | max replicas "
        "| call p50 before (s) | call p50 after (s) | call p95 after (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, p in results["policies"].items():
        lines.append(
            f"| {name} | {p['decision_s']} | {p['serving_s']} | {p['max_replicas_reached']} "
            f"| {p['turn_p50_before_step_s']} | {p['turn_p50_after_step_s']} "
            f"| {p['turn_p95_after_step_s']} |"
        )
    lines += ["", f"![replicas and latency]({stem}.png)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
