"""Tool-calling accuracy on BFCL: the runtime's LLM deployment against bare vLLM.

Targets, one after the other on this machine, same model, same engine flags, same
chat template (``chatml-tools``), same hermes parser, ``tool_choice: auto``,
temperature 0:

- ``vllm``: vLLM's own OpenAI server with its defaults (``--tool-strict-level auto``:
  free text, the parser reads calls back);
- ``runtime``: the LLM deployment on Ray Serve as shipped (``tool_strict_level:
  parameter``: a call's name and arguments follow the tools' schemas);
- ``runtime-decide``: the same with ``tool_choice.auto: decide`` (the one-token
  probe, then ``required`` at or above the threshold; runtime/llm/tool_choice.py).

The runtime's targets are called through the deployment's handle, as the gateway and
the agents call it. The ``vllm`` target also records each case's call probability
(the probe's figure), so a threshold can be chosen on categories the accuracy is not
measured on (``--categories live_simple,live_irrelevance --targets vllm``). The
sweep's "decisions right" is to be read against always calling: the share of cases
that need a call (2/3 with the default categories, 1/2 for the calibration pair).

    make bench-tools   # installs bfcl-eval's data (no dependencies)
    .venv/bin/python benchmarks/tool_calling.py --model smollm2 --limit 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

import bfcl  # noqa: E402 (benchmarks/bfcl.py)
from common import free_port  # noqa: E402 (benchmarks/common.py)

from runtime.config import LLMAppConfig  # noqa: E402
from runtime.llm import tool_choice  # noqa: E402
from runtime.llm.standalone import api_server  # noqa: E402

Chat = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
TARGETS = ("vllm", "runtime", "runtime-decide")


def app_args(model: str, target: str, threshold: float) -> dict[str, Any]:
    """serve_configs/local.yaml's engine settings; the target's tool settings."""
    engine: dict[str, Any] = {
        "max_model_len": 2048,
        "max_num_seqs": 16,
        "chat_template": "chatml-tools",
        "tool_call_parser": "hermes",
        "tool_strict_level": "auto" if target == "vllm" else "parameter",
    }
    auto = "decide" if target == "runtime-decide" else "model"
    return {
        "model": {"source": model},
        "engine": engine,
        "tool_choice": {"auto": auto, "call_threshold": threshold},
    }


def request(case: dict[str, Any], served: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": served,
        "messages": bfcl.messages(case),
        "tools": bfcl.tools(case),
        "tool_choice": "auto",
        "temperature": 0,
        "max_tokens": max_tokens,
    }


def calls_of(reply: dict[str, Any]) -> list[tuple[str, Any]]:
    """The reply's tool calls as (name, arguments); arguments that are not JSON: None."""
    message = (reply.get("choices") or [{}])[0].get("message") or {}
    out = []
    for call in message.get("tool_calls") or []:
        try:
            args = json.loads(call["function"]["arguments"])
        except (TypeError, ValueError):
            args = None
        out.append((call["function"]["name"], args))
    return out


async def run_case(
    chat: Chat, case: dict[str, Any], category: str, served: str, ns: argparse.Namespace
) -> dict[str, Any]:
    body = request(case, served, ns.max_tokens)
    t0 = time.perf_counter()
    row: dict[str, Any] = {"id": case["id"], "category": category}
    try:
        reply = await chat(body)
        row["calls"] = calls_of(reply)
        row["why"] = bfcl.check(case, row["calls"], category)
    except Exception as exc:  # a request the target refused: counted as wrong
        row["calls"], row["why"] = [], f"error: {type(exc).__name__}: {str(exc)[:200]}"
    if ns.probe:
        try:
            row["p_call"] = tool_choice.call_probability(await chat(tool_choice.probe(body)))
        except Exception as exc:  # recorded; the answer's own check stands
            row["probe_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    row["ok"] = row["why"] is None
    row["ms"] = round(1000 * (time.perf_counter() - t0), 1)
    return row


async def run_all(
    chat: Chat, cases: list[tuple[str, dict[str, Any]]], served: str, ns: argparse.Namespace
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(ns.concurrency)

    async def bounded(category: str, case: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await run_case(chat, case, category, served, ns)

    return list(await asyncio.gather(*(bounded(c, case) for c, case in cases)))


def bench_vllm(
    config: LLMAppConfig, cases: list[tuple[str, dict[str, Any]]], ns: argparse.Namespace
) -> list[dict[str, Any]]:
    import openai

    log = REPO / ".cache" / "bench-tools-vllm.log"
    with api_server(config, free_port(), log) as url:
        client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)

        async def chat(body: dict[str, Any]) -> dict[str, Any]:
            reply = await client.chat.completions.create(**body, timeout=300)
            return reply.model_dump()

        return asyncio.run(run_all(chat, cases, config.served_name, ns))


def bench_runtime(
    apps: dict[str, dict[str, Any]],
    cases: list[tuple[str, dict[str, Any]]],
    ns: argparse.Namespace,
) -> dict[str, list[dict[str, Any]]]:
    """Each target an application of one Serve deployment, run one after the other."""
    import ray
    from ray import serve

    from runtime import local_ray
    from runtime.deploy import deploy_config

    local_ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    out = {}
    try:
        for target, args in apps.items():
            deploy_config(
                {
                    "http_options": {"host": "127.0.0.1", "port": free_port()},
                    "applications": [
                        {
                            "name": target,
                            "route_prefix": None,
                            "import_path": "runtime.apps:build_llm_app",
                            "args": args,
                        }
                    ],
                }
            )
            handle = serve.get_deployment_handle("LLMServer", target)

            async def chat(body: dict[str, Any], handle: Any = handle) -> dict[str, Any]:
                return dict(await handle.chat.remote(body))

            served = LLMAppConfig.model_validate(args).served_name
            out[target] = asyncio.run(run_all(chat, cases, served, ns))
            serve.delete(target)
    finally:
        serve.shutdown()
        ray.shutdown()
    return out


def pick(categories: list[str], limit: int | None, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """Up to ``limit`` cases per category, drawn with a fixed seed."""
    out = []
    for category in categories:
        cases = bfcl.load(category)
        random.Random(seed).shuffle(cases)
        out += [(category, c) for c in cases[:limit]]
    return out


def accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for category in sorted({r["category"] for r in rows}):
        mine = [r for r in rows if r["category"] == category]
        why: dict[str, int] = {}
        for r in mine:
            if not r["ok"]:
                key = r["why"].split(" ")[0] if r["why"].startswith("error") else r["why"]
                key = "wrong value" if key.startswith("wrong value") else key
                why[key] = why.get(key, 0) + 1
        per[category] = {
            "cases": len(mine),
            "correct": sum(r["ok"] for r in mine),
            "accuracy": round(sum(r["ok"] for r in mine) / len(mine), 4),
            "called": sum(bool(r["calls"]) for r in mine),
            "p50_ms": sorted(r["ms"] for r in mine)[len(mine) // 2],
            "why_wrong": dict(sorted(why.items(), key=lambda kv: -kv[1])[:6]),
        }
    return per


def threshold_sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each threshold: the share of cases a call/no-call decision at that
    threshold gets right (a call where BFCL expects one, none for irrelevance)."""
    probed = [r for r in rows if "p_call" in r]
    out = []
    for t in (0.001, 0.003, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        right = [(r["p_call"] >= t) != ("irrelevance" in r["category"]) for r in probed]
        relevant = [r for r in probed if "irrelevance" not in r["category"]]
        out.append(
            {
                "threshold": t,
                "decision_accuracy": round(sum(right) / len(right), 4) if right else None,
                "calls_where_needed": round(
                    sum(r["p_call"] >= t for r in relevant) / len(relevant), 4
                )
                if relevant
                else None,
            }
        )
    return out


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Tool calling on BFCL (accuracy, share of cases right)",
        "",
        f"Model `{result['model']}`, {result['limit']} cases per category (seed "
        f"{result['seed']}), threshold {result['threshold']}, {result['machine']}.",
        "",
        "| category | " + " | ".join(result["targets"]) + " |",
        "|---|" + "---|" * len(result["targets"]),
    ]
    for category in result["categories"]:
        cells = []
        for target in result["targets"]:
            a = result["accuracy"][target].get(category)
            cells.append(f"{a['accuracy']:.1%} ({a['correct']}/{a['cases']})" if a else "-")
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    lines += ["", "Why wrong (count of cases):", ""]
    for target in result["targets"]:
        for category, a in result["accuracy"][target].items():
            lines.append(f"- {target}, {category}: {a['why_wrong'] or 'none'}")
    if result.get("sweep"):
        lines += ["", "Call/no-call decision by the probe's threshold (vllm target):", ""]
        lines += ["| threshold | decisions right | calls where one is needed |", "|---|---|---|"]
        for s in result["sweep"]:
            lines.append(
                f"| {s['threshold']} | {s['decision_accuracy']} | {s['calls_where_needed']} |"
            )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    cats, targets = result["categories"], result["targets"]
    width = 0.8 / len(targets)
    for i, target in enumerate(targets):
        acc = [result["accuracy"][target].get(c, {}).get("accuracy", 0) for c in cats]
        ax.bar([j + i * width for j in range(len(cats))], acc, width, label=target)
    ax.set_xticks([j + width * (len(targets) - 1) / 2 for j in range(len(cats))], cats)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"BFCL tool calling, {result['model']} ({result['limit']} cases each)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", choices=["smollm2", "tiny-random"])
    parser.add_argument("--categories", default="simple,multiple,irrelevance")
    parser.add_argument("--limit", type=int, default=40, help="cases per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.01)
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--name", default=None, help="results file name")
    ns = parser.parse_args()
    categories, targets = ns.categories.split(","), ns.targets.split(",")
    cases = pick(categories, ns.limit, ns.seed)
    rows: dict[str, list[dict[str, Any]]] = {}
    ns.probe = False
    apps = {t: app_args(ns.model, t, ns.threshold) for t in targets if t != "vllm"}
    if apps:
        rows.update(bench_runtime(apps, cases, ns))
    if "vllm" in targets:
        ns.probe = True
        config = LLMAppConfig.model_validate(app_args(ns.model, "vllm", ns.threshold))
        rows["vllm"] = bench_vllm(config, cases, ns)
    result = {
        "model": ns.model,
        "categories": categories,
        "targets": targets,
        "limit": ns.limit,
        "seed": ns.seed,
        "threshold": ns.threshold,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "accuracy": {t: accuracy(r) for t, r in rows.items()},
        "sweep": threshold_sweep(rows.get("vllm", [])),
        "rows": rows,
    }
    name = ns.name or f"tool_calling_{ns.model}"
    out = REPO / "benchmarks" / "results"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(render(result))
    plot(result, out / f"{name}.png")
    print(render(result))


if __name__ == "__main__":
    main()
