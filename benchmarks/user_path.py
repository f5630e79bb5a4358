"""The user's path against bare vLLM: client -> Serve proxy -> gateway -> LLM replica.

Two targets on the same model, with the same engine flags (``serve_configs/local.yaml``'s
LLM app, built by the runtime's own ``server_argv``), get the same streaming load:

- ``vllm``: vLLM's own OpenAI server, alone on the machine, run before *and* after the
  runtime (its two passes pooled: the baseline brackets the runtime against drift);
- ``runtime``: ``local.yaml``'s gateway (API key, rate limits counted in memory, usage
  and cost metering) and LLM app in a local Ray cluster, through Serve's HTTP proxy.

At each concurrency (default 1, 8, 32, 64 streams), ``--requests-factor`` x concurrency
streaming chat requests (at least 8), each of exactly ``--max-tokens`` tokens
(``ignore_eos``). Reported per level and target: TTFT, ITL and end-to-end p50/p95/p99,
output tokens/s, the ratios runtime / vLLM, and the CPU seconds per 1,000 output tokens
of each kind of process (read from /proc by psutil around each level: proxy, gateway,
LLM replica, engine core, vLLM's API server, the rest of Ray, and this client).

    .venv/bin/python benchmarks/user_path.py --model smollm2
    .venv/bin/python benchmarks/user_path.py --model tiny-random --levels 32 --label probe
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import openai
import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

from common import PROMPTS, UNREACHED_LIMITS, free_port, pct, stream_chat  # noqa: E402 (benchmarks/common.py)

from runtime import _env  # noqa: E402
from runtime.config import LLMAppConfig  # noqa: E402
from runtime.llm.engine_args import server_argv  # noqa: E402
from runtime.llm.standalone import api_server  # noqa: E402

KEY = "bench-user-path-key-0123456789abcdef"
KINDS = ("proxy", "gateway", "llm_replica", "engine", "vllm_api_server", "ray_other", "client")


def stack(model: str, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """local.yaml's gateway and LLM apps (no agents) for ``model``; the LLM app's args."""
    config = yaml.safe_load((REPO / "serve_configs" / "local.yaml").read_text())
    apps = {a["name"]: a for a in config["applications"]}
    gateway, llm = copy.deepcopy(apps["gateway"]), copy.deepcopy(apps["llm"])
    if model != "smollm2":
        llm["args"]["model"] = {"source": model, "served_name": model}
    name = LLMAppConfig.model_validate(llm["args"]).served_name
    gateway["args"].pop("agent_apps", None)
    gateway["args"]["models"] = [{"name": name, "app": "llm"}]
    gateway["args"]["auth"] = {"local_key_env": _env.RUNTIME_API_KEY}
    gateway["args"]["rate_limits"] = UNREACHED_LIMITS
    serve = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "logging_config": config.get("logging_config"),
        "applications": [gateway, llm],
    }
    return serve, llm["args"]


def kind_of(proc: psutil.Process) -> str | None:
    try:
        if proc.pid == os.getpid():
            return "client"
        line = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for needle, kind in (
        ("ProxyActor", "proxy"),
        ("haproxy", "proxy"),  # the ingress too, with --ingress haproxy
        ("ServeReplica:gateway", "gateway"),
        ("ServeReplica:llm", "llm_replica"),
        ("EngineCore", "engine"),
        ("vllm.entrypoints.openai.api_server", "vllm_api_server"),
    ):
        if needle in line:
            return kind
    return "ray_other" if ("ray" in line.lower()) else None


def cpu_now() -> dict[int, tuple[str, float]]:
    """This user's processes of each kind: their CPU seconds so far."""
    seen: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter():
        kind = kind_of(proc)
        if kind is None:
            continue
        try:
            t = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        seen[proc.pid] = (kind, t.user + t.system)
    return seen


def cpu_spent(before: dict[int, tuple[str, float]]) -> dict[str, float]:
    spent = dict.fromkeys(KINDS, 0.0)
    for pid, (kind, total) in cpu_now().items():
        spent[kind] += total - before.get(pid, (kind, 0.0))[1]
    return spent


async def level(url: str, key: str, model: str, c: int, ns: argparse.Namespace) -> dict[str, Any]:
    """One concurrency level: warm-up, then the timed requests, with CPU use per kind."""
    client = openai.AsyncOpenAI(base_url=url, api_key=key, timeout=600, max_retries=0)
    n = max(8, ns.requests_factor * c)
    sem = asyncio.Semaphore(c)

    async def bounded(i: int) -> dict[str, Any]:
        async with sem:
            return await stream_chat(client, model, PROMPTS[i % len(PROMPTS)], ns.max_tokens)

    await asyncio.gather(*(bounded(i) for i in range(min(c, 8))))  # warm-up
    before = cpu_now()
    start = time.perf_counter()
    results = await asyncio.gather(*(bounded(i) for i in range(n)))
    wall = time.perf_counter() - start
    cpu = cpu_spent(before)
    await client.close()
    tokens = sum(r["tokens"] for r in results)
    out: dict[str, Any] = {"concurrency": c, "requests": n, "wall_s": wall, "tokens": tokens}
    for key_ in ("ttft", "e2e"):
        out[key_] = {f"p{round(q * 100)}": pct([r[key_] for r in results], q) for q in QS}
    itl = [x for r in results for x in r["itl"]]
    out["itl"] = {f"p{round(q * 100)}": pct(itl, q) for q in QS}
    out["output_tokens_per_s"] = tokens / wall
    out["cpu_s"] = cpu
    out["cpu_s_per_1k_tokens"] = {k: v * 1000 / tokens for k, v in cpu.items()}
    return out


QS = (0.5, 0.95, 0.99)


def idle(seconds: float = 10.0) -> dict[str, float]:
    """CPU use of each kind of process while nothing is asked of it (cores)."""
    before = cpu_now()
    time.sleep(seconds)
    return {k: v / seconds for k, v in cpu_spent(before).items()}


def run_levels(url: str, key: str, model: str, ns: argparse.Namespace) -> list[dict[str, Any]]:
    asyncio.run(level(url, key, model, 1, ns))  # the first requests after a start are slow
    quiet = idle()
    print("  idle CPU (cores): " + ", ".join(f"{k} {v:.3f}" for k, v in quiet.items() if v))
    out = []
    for c in ns.levels:
        result = asyncio.run(level(url, key, model, c, ns))
        print(
            f"  c={c}: TTFT p50 {result['ttft']['p50'] * 1e3:.1f} ms, "
            f"{result['output_tokens_per_s']:.1f} tokens/s",
            flush=True,
        )
        result["idle_cpu_cores"] = quiet
        out.append(result)
    return out


def bench_vllm(config: LLMAppConfig, ns: argparse.Namespace) -> list[dict[str, Any]]:
    log = REPO / ".cache" / "bench-user-path-vllm.log"
    # On exit the server and its engine process are gone before the next target starts.
    with api_server(config, free_port(), log) as url:
        return run_levels(url, "unused", config.served_name, ns)


def bench_runtime(serve_config: dict[str, Any], name: str, ns: argparse.Namespace) -> Any:
    import ray
    from ray import serve

    from runtime import local_ray
    from runtime.config.placement import CPU_WORKER
    from runtime.deploy import deploy_config

    os.environ[_env.RUNTIME_API_KEY] = KEY
    local_ray.init(include_dashboard=False, log_to_driver=False, labels=dict(CPU_WORKER))
    try:
        deploy_config(serve_config)
        port = serve_config["http_options"]["port"]
        return run_levels(f"http://127.0.0.1:{port}/v1", KEY, name, ns)
    finally:
        serve.shutdown()
        ray.shutdown()
        local_ray.reap_orphan_engines()
        time.sleep(5)  # Ray's processes exit a few seconds after shutdown


def pooled(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two passes of one level: their means (tokens/s, percentiles, CPU)."""
    out: dict[str, Any] = {"concurrency": a["concurrency"], "passes": [a, b]}
    for key in ("ttft", "itl", "e2e"):
        out[key] = {q: (a[key][q] + b[key][q]) / 2 for q in a[key]}
    out["output_tokens_per_s"] = (a["output_tokens_per_s"] + b["output_tokens_per_s"]) / 2
    out["cpu_s_per_1k_tokens"] = {
        k: (a["cpu_s_per_1k_tokens"][k] + b["cpu_s_per_1k_tokens"][k]) / 2 for k in KINDS
    }
    return out


def ratios(rt: dict[str, Any], vl: dict[str, Any]) -> dict[str, float]:
    out = {f"{k}_{q}": rt[k][q] / vl[k][q] for k in ("ttft", "itl", "e2e") for q in rt[k]}
    out["output_tokens_per_s"] = rt["output_tokens_per_s"] / vl["output_tokens_per_s"]
    return out


def table(result: dict[str, Any]) -> str:
    rows = [
        "| streams | TTFT p50 ms runtime / vLLM | ratio | ITL p50 ms runtime / vLLM | ratio "
        "| e2e p95 ms runtime / vLLM | ratio | tokens/s runtime / vLLM | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["levels"]:
        rt, vl, r = row["runtime"], row["vllm"], row["ratios"]
        cells = [str(row["concurrency"])]
        for key, q, digits in (("ttft", "p50", 1), ("itl", "p50", 1), ("e2e", "p95", 0)):
            ms = f"{rt[key][q] * 1e3:.{digits}f} / {vl[key][q] * 1e3:.{digits}f}"
            cells += [ms, f"{r[f'{key}_{q}']:.3f}"]
        rates = f"{rt['output_tokens_per_s']:.1f} / {vl['output_tokens_per_s']:.1f}"
        cells += [rates, f"{r['output_tokens_per_s']:.3f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cpu_table(result: dict[str, Any]) -> str:
    rows = [
        "| streams | target | " + " | ".join(KINDS) + " |",
        "|---|---|" + "---|" * len(KINDS),
    ]
    for row in result["levels"]:
        for target in ("runtime", "vllm"):
            cpu = row[target]["cpu_s_per_1k_tokens"]
            rows.append(
                f"| {row['concurrency']} | {target} | "
                + " | ".join(f"{cpu[k]:.2f}" for k in KINDS)
                + " |"
            )
    return "\n".join(rows)


def context() -> str:
    """The gateway's added latency and the agents' per-step overhead, as last recorded by
    their own benchmarks (``make bench-gateway``, ``make bench-agents``)."""
    results = REPO / "benchmarks" / "results"
    lines = []
    gateway = results / "gateway_latency.json"
    if gateway.exists():
        kinds = json.loads(gateway.read_text())["kinds"]
        for kind in ("chat max_tokens=1", "stream, first token"):
            g = kinds[kind]["gateway"]
            lines.append(
                f"- gateway added, {kind}: {g['added_p50_ms']:.1f} ms at p50 (paired median "
                f"{g['added_paired_median_ms']:.1f} ms; `gateway_latency.md`)"
            )
        floor = kinds.get("serve hop floor (echo)", {}).get("front -> echo")
        if floor:
            lines.append(f"- one Serve hop alone: {floor['added_p50_ms']:.1f} ms at p50")
    agents = results / "agent_overhead.json"
    if agents.exists():
        scenarios = json.loads(agents.read_text())["scenarios"]["scripted"]
        for mode in ("handle", "http"):
            step = scenarios[mode]["overhead_per_step_p50_ms"]
            lines.append(
                f"- agent per-step overhead over in-process, {mode}: {step:.1f} ms at p50 "
                "(`agent_overhead.md`)"
            )
    return "\n".join(lines) or "- (no gateway or agent results recorded)"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [row["concurrency"] for row in result["levels"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (
        ("ttft_p50", "TTFT p50"),
        ("itl_p50", "ITL p50"),
        ("output_tokens_per_s", "output tokens/s"),
    ):
        ax.plot(xs, [row["ratios"][key] for row in result["levels"]], marker="o", label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("runtime / bare vLLM")
    ax.set_title(f"User path vs bare vLLM: {result['model']} ({result['label']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: dict[str, Any], out: Path) -> None:
    """The result's JSON, Markdown report and plot."""
    out.write_text(json.dumps(result, indent=2) + "\n")
    text, cpu = table(result), cpu_table(result)
    out.with_suffix(".md").write_text(
        f"# User path vs bare vLLM: {result['model']}, {result['load']['max_tokens']} tokens "
        f"per stream\n\nRecorded {result['date']} on {result['machine']['cpus']} cores by "
        f"`benchmarks/user_path.py` ({result['label']}; Serve ingress: "
        f"{result.get('serve_ingress', 'proxy')}); ratio = runtime / vLLM (vLLM: two "
        f"passes, before and after the runtime, pooled).\n\n{text}\n\n"
        f"## CPU seconds per 1,000 output tokens\n\n{cpu}\n\n"
        f"## The gateway and the agents, from their own benchmarks\n\n{context()}\n"
    )
    plot(result, out.with_suffix(".png"))
    print(text + "\n\n" + cpu)
    print(f"\nwritten: {out} (.md, .png)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "tiny-random"], default="smollm2")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--requests-factor", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--label", default="", help="a suffix of the result files' names")
    parser.add_argument(
        "--ingress",
        choices=["proxy", "haproxy"],
        default="proxy",
        help="Serve's HTTP ingress: its proxy actor (default, as `make run`) or HAProxy",
    )
    parser.add_argument("--render", type=Path, help="only write the report of this JSON again")
    ns = parser.parse_args()
    if ns.render:
        write(json.loads(ns.render.read_text()), ns.render)
        return
    os.environ.update(_env.serve_env(ns.ingress))  # before any Ray process starts
    serve_config, llm_args = stack(ns.model, free_port())
    config = LLMAppConfig.model_validate(llm_args)
    print("vLLM, first pass", flush=True)
    first = bench_vllm(config, ns)
    print("runtime", flush=True)
    runtime = bench_runtime(serve_config, config.served_name, ns)
    print("vLLM, second pass", flush=True)
    second = bench_vllm(config, ns)
    levels = []
    for rt, a, b in zip(runtime, first, second, strict=True):
        vl = pooled(a, b)
        levels.append(
            {"concurrency": rt["concurrency"], "runtime": rt, "vllm": vl, "ratios": ratios(rt, vl)}
        )
    result = {
        "benchmark": "user_path",
        "label": ns.label or "current",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "model": config.served_name,
        "engine_flags": server_argv(config, "<model dir>"),
        "serve_ingress": ns.ingress,
        "serve_env": _env.serve_env(ns.ingress),
        "load": {"max_tokens": ns.max_tokens, "requests_factor": ns.requests_factor},
        "levels": levels,
    }
    suffix = f"_{ns.label}" if ns.label else ""
    write(result, REPO / "benchmarks" / "results" / f"user_path_{ns.model}{suffix}.json")


if __name__ == "__main__":
    main()
