"""Streaming chat latency: the LLM deployment over Serve HTTP vs vLLM's own OpenAI server.

Both targets run the same model with the same engine flags (built by the
runtime's own ``server_argv``) and the same replica environment, one after the
other on this machine, and get the same load: ``--requests`` streaming chat
requests, ``--concurrency`` at a time, each generating exactly ``--max-tokens``
tokens (``ignore_eos``). Reported per target: TTFT, TPOT, ITL and end-to-end
latency (p50/p95/p99), output tokens/s; and the ratios runtime / vLLM.

    .venv/bin/python benchmarks/llm_latency.py --model smollm2 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import openai

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

from common import PROMPTS, free_port, pct, stream_chat  # noqa: E402 (benchmarks/common.py)

from runtime import _env  # noqa: E402
from runtime.config import LLMAppConfig  # noqa: E402
from runtime.llm.engine_args import server_argv  # noqa: E402
from runtime.llm.standalone import api_server  # noqa: E402


def app_args(model: str) -> dict[str, Any]:
    # The engine settings of serve_configs/local.yaml (CPU default dtype: float32).
    return {"model": {"source": model}, "engine": {"max_model_len": 2048, "max_num_seqs": 32}}


async def run_load(base_url: str, model: str, ns: argparse.Namespace) -> dict[str, Any]:
    """``ns.rounds`` rounds of ``ns.requests`` requests, ``ns.concurrency`` at a time."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", timeout=600, max_retries=0)
    for i in range(ns.warmup):
        await stream_chat(client, model, PROMPTS[i % len(PROMPTS)], ns.max_tokens)
    sem = asyncio.Semaphore(ns.concurrency)

    async def bounded(i: int) -> dict[str, Any]:
        async with sem:
            return await stream_chat(client, model, PROMPTS[i % len(PROMPTS)], ns.max_tokens)

    results: list[dict[str, Any]] = []
    round_rates: list[float] = []
    wall = 0.0
    for _ in range(ns.rounds):
        start = time.perf_counter()
        batch = await asyncio.gather(*(bounded(i) for i in range(ns.requests)))
        elapsed = time.perf_counter() - start
        wall += elapsed
        results += batch
        round_rates.append(sum(r["tokens"] for r in batch) / elapsed)
    await client.close()
    summary: dict[str, Any] = {
        "requests": len(results),
        "wall_s": wall,
        "output_tokens_per_s_by_round": round_rates,
    }
    for key in ("ttft", "tpot", "e2e"):
        values = [r[key] for r in results]
        summary[key] = {f"p{int(q * 100)}": pct(values, q) for q in (0.5, 0.95, 0.99)}
    itl = [x for r in results for x in r["itl"]]
    summary["itl"] = {f"p{int(q * 100)}": pct(itl, q) for q in (0.5, 0.95, 0.99)}
    total_tokens = sum(r["tokens"] for r in results)
    summary["output_tokens"] = total_tokens
    summary["output_tokens_per_s"] = total_tokens / wall
    return summary


def bench_runtime(
    config: LLMAppConfig, raw_args: dict[str, Any], ns: argparse.Namespace
) -> dict[str, Any]:
    import ray
    from ray import serve

    from runtime import local_ray
    from runtime.deploy import deploy_config

    port = free_port()
    local_ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.perf_counter()
        deploy_config(
            {
                "http_options": {"host": "127.0.0.1", "port": port},
                "applications": [
                    {
                        "name": "llm",
                        "route_prefix": "/",
                        "import_path": "runtime.apps:build_llm_app",
                        "args": raw_args,
                    }
                ],
            }
        )
        ready = time.perf_counter() - t0
        out = asyncio.run(run_load(f"http://127.0.0.1:{port}/v1", config.served_name, ns))
        out["ready_s"] = ready
        return out
    finally:
        serve.shutdown()
        ray.shutdown()


def bench_vllm(config: LLMAppConfig, ns: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    log = REPO / ".cache" / "bench-vllm-server.log"
    # On exit the server and its engine process are gone before the next target starts.
    with api_server(config, free_port(), log) as url:
        ready = time.perf_counter() - t0
        out = asyncio.run(run_load(url, config.served_name, ns))
    out["ready_s"] = ready
    return out


def table(result: dict[str, Any]) -> str:
    rt, vl, ratio = result["runtime_serve_http"], result["vllm_api_server"], result["ratios"]
    rows = ["| metric | runtime (Serve HTTP) | vLLM api_server | ratio |", "|---|---|---|---|"]
    for key in ("ttft", "tpot", "itl", "e2e"):
        for q in ("p50", "p95", "p99"):
            rows.append(
                f"| {key} {q} (ms) | {rt[key][q] * 1e3:.1f} | {vl[key][q] * 1e3:.1f} | "
                f"{ratio[f'{key}_{q}']:.3f} |"
            )
    rounds = [" / ".join(f"{x:.1f}" for x in t["output_tokens_per_s_by_round"]) for t in (rt, vl)]
    rows.append(f"| output tokens/s by round | {rounds[0]} | {rounds[1]} | |")
    rows.append(
        f"| output tokens/s | {rt['output_tokens_per_s']:.1f} | "
        f"{vl['output_tokens_per_s']:.1f} | {ratio['output_tokens_per_s']:.3f} |"
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "tiny-random"], default="smollm2")
    parser.add_argument("--requests", type=int, default=32, help="requests per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per target, pooled")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument(
        "--ingress",
        choices=["proxy", "haproxy"],
        default="proxy",
        help="Serve's HTTP ingress: its proxy actor (default) or HAProxy with direct ingress",
    )
    parser.add_argument("--out", type=Path, default=None)
    ns = parser.parse_args()
    # The Serve settings `python -m runtime run` uses, before any Ray process starts.
    os.environ.update(_env.serve_env(ns.ingress))

    raw_args = app_args(ns.model)
    config = LLMAppConfig.model_validate(raw_args)
    # Bare vLLM first: Ray's processes take a few seconds to exit after shutdown,
    # and must not steal CPU from the baseline.
    vllm = bench_vllm(config, ns)
    runtime = bench_runtime(config, raw_args, ns)
    ratios = {
        f"{k}_{q}": runtime[k][q] / vllm[k][q]
        for k in ("ttft", "tpot", "itl", "e2e")
        for q in ("p50", "p95", "p99")
    }
    ratios["output_tokens_per_s"] = runtime["output_tokens_per_s"] / vllm["output_tokens_per_s"]
    result = {
        "benchmark": "llm_latency",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "model": config.served_name,
        "engine_flags": server_argv(config, "<model dir>"),
        "serve_ingress": ns.ingress,
        "serve_env": _env.serve_env(ns.ingress),
        "load": {
            "requests_per_round": ns.requests,
            "rounds": ns.rounds,
            "concurrency": ns.concurrency,
            "max_tokens": ns.max_tokens,
            "warmup": ns.warmup,
            "streaming": True,
        },
        "runtime_serve_http": runtime,
        "vllm_api_server": vllm,
        "ratios": ratios,
    }
    suffix = "" if ns.ingress == "proxy" else f"_{ns.ingress}"
    out = ns.out or REPO / "benchmarks" / "results" / f"llm_latency_{ns.model}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    text = table(result)
    out.with_suffix(".md").write_text(
        f"# LLM latency: {config.served_name}, {ns.rounds} rounds of {ns.requests} streaming "
        f"requests, concurrency {ns.concurrency}, {ns.max_tokens} tokens each; "
        f"Serve ingress: {ns.ingress}\n\nRecorded {result['date']} on {os.cpu_count()} cores "
        f"by `benchmarks/llm_latency.py`; ratio = runtime / vLLM.\n\n{text}\n"
    )
    print(text)
    print(f"\nwritten: {out} and {out.with_suffix('.md')}")
    print(
        f"p50 TTFT ratio {ratios['ttft_p50']:.3f}; throughput ratio "
        f"{ratios['output_tokens_per_s']:.3f}"
    )


if __name__ == "__main__":
    main()
