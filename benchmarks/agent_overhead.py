"""Agent turn overhead: the runtime (handle and HTTP) against the same agent in-process.

One run, one machine, one local Ray cluster with the LLM deployment and an agent
application (one ``AgentServer`` replica, SQLite sessions). Per scenario, the same
LangGraph agent (``runtime.agents.examples:assistant``, same tools, same model) runs:

- ``in-process``: the compiled graph called directly in this process, with an
  in-memory LangGraph checkpointer (the floor: no Serve, no durable store);
- ``in-process+sqlite``: the same with LangGraph's SQLite checkpointer, sync durability
  (what the runtime writes per step);
- ``handle``: ``runtime.connect()`` over Serve deployment handles;
- ``http``: ``runtime.connect(url, api_key=...)`` over HTTP through the gateway.

Scenarios: ``scripted`` (the scripted stand-in model: 5 steps per turn, two tool calls,
no model time, so the runtime's own cost shows) and ``smollm2`` (the real local
model through the LLM deployment's handle in every mode; 1 turn = whatever steps the
model takes, at temperature 0). Per-step overhead = (p50 turn - p50 in-process turn)
/ steps. Then memory per idle session: RSS of the replica before and after opening
``--idle-sessions`` sessions with one turn each, and the store's bytes per session.

    .venv/bin/python benchmarks/agent_overhead.py --turns 60 --llm-turns 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

from common import free_port, nearest_rank  # noqa: E402 (benchmarks/common.py)

from runtime import _env  # noqa: E402

SCRIPT = {
    "kind": "scripted",
    "rules": [
        {
            "steps": [
                {"tool": "calculator", "args": {"expression": "6*7"}},
                {"tool": "clock", "args": {"timezone": "UTC"}},
                {"answer": "The answer is 42 and the time is {last_tool_result}."},
            ]
        }
    ],
}
TOOLS = ["runtime.agents.tools:calculator", "runtime.agents.tools:clock"]
LLM_QUESTION = "What is 6 times 7?"


TINY = "tiny-random"
TINY_APP = {
    "name": "tiny",
    "route_prefix": None,
    "import_path": "runtime.apps:build_llm_app",
    "args": {
        "model": {"source": "tiny-random", "served_name": TINY},
        "engine": {"max_model_len": 512, "max_num_seqs": 8},
        "num_cpus": 0.25,  # beside SmolLM2, the agents and the gateway on one 2-CPU node
    },
}


def _routed(model: str, max_tokens: int) -> dict[str, Any]:
    """An agent's `llm` through the runtime's router. The baseline tree (``--tree`` of an
    older checkout, run for a before/after figure) names the gateway's router instead."""
    from runtime.config.agents import ServeLLM

    if "gateway" in ServeLLM.model_fields:  # before the straight request path
        return {"gateway": "gateway", "model": model, "max_tokens": max_tokens}
    return {"model": model, "max_tokens": max_tokens}


def agent_specs() -> list[dict[str, Any]]:
    """The agents the runtime hosts (their LLM calls through the router)."""
    local = yaml.safe_load((REPO / "serve_configs/local.yaml").read_text())
    apps = {a["name"]: a for a in local["applications"]}
    assistant = next(a for a in apps["agents"]["args"]["agents"] if a["name"] == "assistant")
    assistant = {**assistant, "busy": "reject", "llm": _routed("smollm2-135m-instruct", 256)}
    scripted = {**assistant, "name": "scripted", "llm": SCRIPT}
    # One call of the tiny model a turn (~ms): the cost of the LLM call's path shows.
    tiny = {**assistant, "name": "tiny", "llm": _routed(TINY, 8), "tools": []}
    return [assistant, scripted, tiny]


def in_process_specs() -> dict[str, dict[str, Any]]:
    """The same agents for the in-process floor: the model's deployment by handle."""
    specs = {s["name"]: dict(s) for s in agent_specs()}
    specs["assistant"]["llm"] = {"app": "llm", "model": "smollm2-135m-instruct", "max_tokens": 256}
    specs["tiny"]["llm"] = {"app": "tiny", "model": TINY, "max_tokens": 8}
    return specs


def stack_config(port: int, store: Path) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "serve_configs/local.yaml").read_text())
    config["http_options"]["port"] = port
    config["applications"].append(TINY_APP)
    apps = {a["name"]: a for a in config["applications"]}
    models = [{"name": "smollm2-135m-instruct", "app": "llm"}, {"name": TINY, "app": "tiny"}]
    apps["gateway"]["args"]["models"] = models
    agents = apps["agents"]["args"]
    agents["agents"] = agent_specs()
    agents["sessions"] = {"store": {"kind": "sqlite", "path": str(store)}}
    if "router" in agents:
        agents["router"] = {"models": models}
    return config


def summary(latencies: list[float], steps: list[int]) -> dict[str, Any]:
    return {
        "turns": len(latencies),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p90_ms": round(nearest_rank(latencies, 0.9) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "steps_per_turn": statistics.median(steps),
    }


async def in_process(spec: dict[str, Any], turns: int, sqlite: Path | None) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from runtime.agents.chat_model import chat_model
    from runtime.agents.definitions import build_context, build_graph
    from runtime.config.agents import AgentSpec

    agent = AgentSpec.model_validate(spec)
    saver_cm = None
    if sqlite is None:
        saver: Any = InMemorySaver()
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        saver_cm = AsyncSqliteSaver.from_conn_string(str(sqlite))
        saver = await saver_cm.__aenter__()
    graph = build_graph(build_context(agent, chat_model(agent.llm), saver))
    latencies, steps = [], []
    thread = ""
    for i in range(turns):
        if i % 10 == 0:  # 10 turns per conversation, as through the runtime
            thread = f"bench-{time.time_ns()}"
        started = time.perf_counter()
        n = 0
        async for _ in graph.astream(
            {"messages": [HumanMessage(LLM_QUESTION)]},
            {"configurable": {"thread_id": thread}, "recursion_limit": 50},
            stream_mode="updates",
            durability="sync",
        ):
            n += 1
        latencies.append(time.perf_counter() - started)
        steps.append(n)
    if saver_cm is not None:
        await saver_cm.__aexit__(None, None, None)
    return summary(latencies, steps)


def through_runtime(client: Any, agent: str, turns: int) -> dict[str, Any]:
    latencies, steps = [], []
    session = None
    for i in range(turns):
        if i % 10 == 0:  # the same history lengths as in-process: 10 turns per session
            session = client.agent(agent).session()
        started = time.perf_counter()
        result = session.invoke(LLM_QUESTION)
        latencies.append(time.perf_counter() - started)
        steps.append(result.steps)
    return summary(latencies, steps)


def replica_pid(app: str) -> int:
    from ray._private import state

    table = state.actors(actor_state_name="ALIVE")
    pids = [
        a["Pid"] for a in table.values() if a["ActorClassName"] == f"ServeReplica:{app}:AgentServer"
    ]
    assert len(pids) == 1, pids
    return int(pids[0])


async def idle_sessions(client: Any, count: int, pid: int, store: Path) -> dict[str, Any]:
    import gc

    agent = client.agent("scripted")
    warm = await agent.asession()
    await warm.ainvoke("warm up")
    proc = psutil.Process(pid)
    rss0, size0 = proc.memory_info().rss, store.stat().st_size
    batch = 50
    for _ in range(0, count, batch):
        sessions = await asyncio.gather(*(agent.asession() for _ in range(batch)))
        await asyncio.gather(*(s.ainvoke("hello") for s in sessions))
    gc.collect()
    await asyncio.sleep(2)
    rss1 = proc.memory_info().rss
    wal = store.with_name(store.name + "-wal")
    size1 = store.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    return {
        "sessions": count,
        "replica_rss_before_mib": round(rss0 / 2**20, 1),
        "replica_rss_after_mib": round(rss1 / 2**20, 1),
        "rss_per_idle_session_kib": round((rss1 - rss0) / count / 1024, 2),
        "store_bytes_per_session": round((size1 - size0) / count),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=60, help="scripted turns per mode")
    parser.add_argument("--llm-turns", type=int, default=12, help="SmolLM2 turns per mode")
    parser.add_argument("--idle-sessions", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="the JSON of a run of another tree (e.g. before a change, run right before "
        "this one on the same machine): the report compares the two, with a plot",
    )
    ns = parser.parse_args()

    import ray

    import runtime
    from runtime import local_ray
    from runtime.config.placement import CPU_WORKER
    from runtime.deploy import deploy_config

    os.environ.update(_env.serve_env())
    from runtime.gateway.auth import new_key

    key = os.environ.setdefault(_env.RUNTIME_API_KEY, new_key())  # the gateway's local key
    tmp = Path(tempfile.mkdtemp(prefix="agent-bench-"))
    store = tmp / "sessions.sqlite"
    port = free_port()
    # Logical CPUs (Ray's accounting): SmolLM2, the tiny model, the agents and the
    # gateway on one 2-core machine would not fit by their reservations otherwise.
    local_ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, labels=CPU_WORKER)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
        },
        "scenarios": {},
    }
    try:
        deploy_config(stack_config(port, store), source="benchmark", timeout_s=900)
        handle = runtime.connect(app="agents")
        http = runtime.connect(f"http://127.0.0.1:{port}", api_key=key)
        specs = in_process_specs()
        for scenario, agent, turns in (
            ("scripted", "scripted", ns.turns),
            ("tiny", "tiny", ns.turns),
            ("smollm2", "assistant", ns.llm_turns),
        ):
            print(f"[{scenario}] warm-up", flush=True)
            through_runtime(handle, agent, 2)
            through_runtime(http, agent, 2)
            asyncio.run(in_process(specs[agent], 2, None))
            modes: dict[str, Any] = {}
            for mode in ("in-process", "in-process+sqlite", "handle", "http"):
                print(f"[{scenario}] {mode}", flush=True)
                if mode == "in-process":
                    modes[mode] = asyncio.run(in_process(specs[agent], turns, None))
                elif mode == "in-process+sqlite":
                    modes[mode] = asyncio.run(
                        in_process(specs[agent], turns, tmp / "inproc.sqlite")
                    )
                else:
                    modes[mode] = through_runtime(
                        handle if mode == "handle" else http, agent, turns
                    )
            base = modes["in-process"]
            for mode in ("in-process+sqlite", "handle", "http"):
                m = modes[mode]
                steps = max(m["steps_per_turn"], 1)
                m["overhead_p50_ms"] = round(m["p50_ms"] - base["p50_ms"], 3)
                m["overhead_per_step_p50_ms"] = round((m["p50_ms"] - base["p50_ms"]) / steps, 3)
            results["scenarios"][scenario] = modes
        print("[memory] idle sessions", flush=True)
        results["idle_sessions"] = asyncio.run(
            idle_sessions(handle, ns.idle_sessions, replica_pid("agents"), store)
        )
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
    ns.out.mkdir(parents=True, exist_ok=True)
    if ns.baseline is not None:
        results["baseline"] = json.loads(ns.baseline.read_text())
        plot(results, ns.out / "agent_overhead.png")
    (ns.out / "agent_overhead.json").write_text(json.dumps(results, indent=2) + "\n")
    (ns.out / "agent_overhead.md").write_text(render(results))
    print(render(results))
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Agent turn overhead (benchmarks/agent_overhead.py)",
        "",
        f"Machine: {results['machine']}",
        "",
        "| scenario | mode | steps/turn | p50 ms | p90 ms | overhead p50 ms | per step ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for scenario, modes in results["scenarios"].items():
        for mode, m in modes.items():
            lines.append(
                f"| {scenario} | {mode} | {m['steps_per_turn']} | {m['p50_ms']} | {m['p90_ms']} "
                f"| {m.get('overhead_p50_ms', '-')} | {m.get('overhead_per_step_p50_ms', '-')} |"
            )
    baseline = results.get("baseline")
    if baseline:
        lines += [
            "",
            "Against the baseline run (another tree, run just before this one; per-step "
            "overhead over in-process, p50):",
            "",
            "| scenario | mode | baseline p50 ms | p50 ms | baseline per step ms | per step ms |",
            "|---|---|---|---|---|---|",
        ]
        for scenario, mode, before, after in _pairs(results):
            lines.append(
                f"| {scenario} | {mode} | {before['p50_ms']} | {after['p50_ms']} "
                f"| {before.get('overhead_per_step_p50_ms', '-')} "
                f"| {after.get('overhead_per_step_p50_ms', '-')} |"
            )
        lines += ["", "![per-step overhead](agent_overhead.png)"]
    idle = results.get("idle_sessions")
    if idle:
        lines += ["", "Idle sessions:", "", "```", json.dumps(idle, indent=2), "```"]
    return "\n".join(lines) + "\n"


def _pairs(results: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(scenario, mode, baseline, this run) for each mode both runs measured."""
    before = results["baseline"]["scenarios"]
    return [
        (scenario, mode, before[scenario][mode], m)
        for scenario, modes in results["scenarios"].items()
        for mode, m in modes.items()
        if mode in before.get(scenario, {})
    ]


def plot(results: dict[str, Any], path: Path) -> None:
    """Per-step overhead over in-process, baseline against this run, by scenario/mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in _pairs(results) if p[1] in ("handle", "http")]
    labels = [f"{scenario}\n{mode}" for scenario, mode, _, _ in pairs]
    before = [b.get("overhead_per_step_p50_ms", 0) for _, _, b, _ in pairs]
    after = [a.get("overhead_per_step_p50_ms", 0) for _, _, _, a in pairs]
    x = range(len(pairs))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([i - 0.2 for i in x], before, 0.4, label="baseline")
    ax.bar([i + 0.2 for i in x], after, 0.4, label="this run")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("overhead per step over in-process, p50 (ms)")
    ax.set_title("Agent turn overhead per step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
