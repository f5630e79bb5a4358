"""The gateway's added latency against calling the LLM deployment directly, same run.

One local Ray cluster, one LLM deployment (the tiny random model on the CPU engine, so
that the engine's own time is short and the hop shows), and in front of it:

- ``direct-http``: the LLM deployment's own OpenAI routes (vLLM's router in the replica)
  through Serve's HTTP proxy, no gateway;
- ``gateway``: the same request through the gateway (authentication, limits counted in
  memory, the router, a handle call to the same LLM deployment);
- ``gateway-redis``: a second gateway whose limits are counted in a Redis on loopback
  (only when ``redis-server`` is installed);
- ``handle``: the LLM deployment's handle from this driver (no HTTP at all).

Requests are interleaved (one of each mode in turn, the same keep-alive HTTP client),
so drift of the machine hits every mode alike. Two request kinds: a chat completion
with ``max_tokens: 1`` and a streamed one (time to the first content chunk). The added
latency is the median of the per-round differences gateway - direct-http, and the
difference of the p50s.

    .venv/bin/python benchmarks/gateway_latency.py --rounds 300
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))

from common import UNREACHED_LIMITS, free_port, nearest_rank  # noqa: E402 (benchmarks/common.py)

from runtime import _env  # noqa: E402

MODEL = "tiny-random"
REDIS_ENV = "RUNTIME_BENCH_REDIS_URL"


def gateway_app(name: str, prefix: str, limits: dict[str, Any], env: dict[str, str]) -> Any:
    from runtime.config.placement import CPU_WORKER

    return {
        "name": name,
        "route_prefix": prefix,
        "import_path": "runtime.apps:build_gateway_app",
        "args": {
            "models": [{"name": MODEL, "app": "llm"}],
            "auth": {"local_key_env": _env.RUNTIME_API_KEY},
            "rate_limits": limits,
        },
        "deployments": [
            {
                "name": "Gateway",
                "ray_actor_options": {
                    "num_cpus": 0.5,
                    "label_selector": CPU_WORKER,
                    "runtime_env": {"env_vars": env},
                },
            }
        ],
    }


def stack_config(port: int, redis_url: str | None) -> dict[str, Any]:
    apps = [
        {
            "name": "llm",
            "route_prefix": "/llm",
            "import_path": "runtime.apps:build_llm_app",
            "args": {
                "model": {"source": "tiny-random", "served_name": MODEL},
                "engine": {"max_model_len": 512, "max_num_seqs": 8},
            },
        },
        gateway_app("gateway", "/", UNREACHED_LIMITS, {}),
    ]
    if redis_url:
        apps.append(
            gateway_app(
                "gateway-redis",
                "/redis",
                {**UNREACHED_LIMITS, "storage_url_env": REDIS_ENV},
                {REDIS_ENV: redis_url},
            )
        )
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": apps,
    }


def stats(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p90_ms": round(nearest_rank(ms, 0.9), 3),
        "p99_ms": round(nearest_rank(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def is_token(chunk: dict[str, Any]) -> bool:
    """A chunk with the first generated token (after the chunk that only names the role;
    the random model's tokens may decode to empty text)."""
    return any("role" not in c.get("delta", {}) for c in chunk.get("choices") or [])


def timed_http(http: Any, url: str, body: dict[str, Any], stream: bool) -> float:
    started = time.perf_counter()
    if not stream:
        response = http.post(url, json=body)
        response.raise_for_status()
        return time.perf_counter() - started
    elapsed = None
    with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():  # read to the end: the next request is clean
            if elapsed is None and line.startswith("data: {") and is_token(json.loads(line[6:])):
                elapsed = time.perf_counter() - started
    if elapsed is None:
        raise RuntimeError(f"{url}: no content chunk in the stream")
    return elapsed


def timed_handle(handle: Any, body: dict[str, Any], stream: bool) -> float:
    started = time.perf_counter()
    if not stream:
        handle.chat.remote(body).result()
        return time.perf_counter() - started
    elapsed = None
    for chunk in handle.options(stream=True).chat_stream.remote(body):
        if elapsed is None and is_token(chunk):
            elapsed = time.perf_counter() - started
    if elapsed is None:
        raise RuntimeError("handle: no content chunk in the stream")
    return elapsed


def serve_hop_floor(port: int, rounds: int) -> dict[str, Any]:
    """The cost of one Serve hop alone: an echo deployment over HTTP, against the same
    echo behind a second deployment that forwards by handle (what the gateway adds
    before doing anything of its own)."""
    import httpx
    from fastapi import FastAPI
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    echo_api, front_api = FastAPI(), FastAPI()

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    @serve.ingress(echo_api)
    class Echo:
        @echo_api.post("/")
        async def root(self, body: dict[str, Any]) -> dict[str, Any]:
            return body

        async def call(self, body: dict[str, Any]) -> dict[str, Any]:
            return body

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    @serve.ingress(front_api)
    class Front:
        def __init__(self) -> None:
            self.echo = serve.get_deployment_handle("Echo", app_name="echo")

        @front_api.post("/")
        async def root(self, body: dict[str, Any]) -> Any:
            return await self.echo.call.remote(body)

    serve.run(Echo.bind(), name="echo", route_prefix="/echo")
    serve.run(Front.bind(), name="front", route_prefix="/front")
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}
    samples: dict[str, list[float]] = {"echo": [], "front -> echo": []}
    with httpx.Client(timeout=30) as http:
        for i in range(rounds + 20):
            for mode, path in (("echo", "/echo/"), ("front -> echo", "/front/")):
                started = time.perf_counter()
                http.post(f"http://127.0.0.1:{port}{path}", json=body).raise_for_status()
                if i >= 20:
                    samples[mode].append(time.perf_counter() - started)
    modes = {m: stats(v) for m, v in samples.items()}
    paired = [f - e for f, e in zip(samples["front -> echo"], samples["echo"], strict=True)]
    modes["front -> echo"]["added_p50_ms"] = round(
        modes["front -> echo"]["p50_ms"] - modes["echo"]["p50_ms"], 3
    )
    modes["front -> echo"]["added_paired_median_ms"] = round(statistics.median(paired) * 1000, 3)
    return modes


def start_redis() -> tuple[subprocess.Popen[bytes] | None, str | None]:
    server = shutil.which("redis-server")
    if server is None:
        return None, None
    port = free_port()
    root = tempfile.mkdtemp(prefix="bench-redis-")
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", root],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300, help="requests per mode and kind")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks/results")
    ns = parser.parse_args()

    import httpx
    import ray
    from ray import serve

    from runtime import local_ray
    from runtime.config.placement import CPU_WORKER
    from runtime.deploy import deploy_config
    from runtime.gateway.auth import new_key

    os.environ.update(_env.serve_env())
    key = os.environ.setdefault(_env.RUNTIME_API_KEY, new_key())
    redis_process, redis_url = start_redis()
    port = free_port()
    local_ray.init(include_dashboard=False, log_to_driver=False, labels=CPU_WORKER)
    base = f"http://127.0.0.1:{port}"
    urls = {
        "direct-http": f"{base}/llm/v1/chat/completions",
        "gateway": f"{base}/v1/chat/completions",
    }
    if redis_url:
        urls["gateway-redis"] = f"{base}/redis/v1/chat/completions"
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "ray": ray.__version__,
            "model": MODEL,
        },
        "rounds": ns.rounds,
        "kinds": {},
    }
    try:
        deploy_config(stack_config(port, redis_url), source="benchmark", timeout_s=900)
        handle = serve.get_deployment_handle("LLMServer", app_name="llm")
        http = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60)
        kinds = {
            "chat max_tokens=1": (
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Hello there"}],
                    "max_tokens": 1,
                },
                False,
            ),
            "stream, first token": (
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": "Hello there"}],
                    "max_tokens": 4,
                    "ignore_eos": True,
                    "stream": True,
                },
                True,
            ),
        }
        for kind, (body, stream) in kinds.items():
            print(f"[{kind}] warm-up", flush=True)
            for _ in range(ns.warmup):
                for url in urls.values():
                    timed_http(http, url, body, stream)
                timed_handle(handle, body, stream)
            samples: dict[str, list[float]] = {m: [] for m in [*urls, "handle"]}
            print(f"[{kind}] {ns.rounds} rounds", flush=True)
            for _ in range(ns.rounds):
                for mode, url in urls.items():
                    samples[mode].append(timed_http(http, url, body, stream))
                samples["handle"].append(timed_handle(handle, body, stream))
            modes = {m: stats(v) for m, v in samples.items()}
            for mode in [m for m in urls if m != "direct-http"]:
                paired = [g - d for g, d in zip(samples[mode], samples["direct-http"], strict=True)]
                modes[mode]["added_p50_ms"] = round(
                    modes[mode]["p50_ms"] - modes["direct-http"]["p50_ms"], 3
                )
                modes[mode]["added_paired_median_ms"] = round(statistics.median(paired) * 1000, 3)
            results["kinds"][kind] = modes
        serve.shutdown()
        print("[serve hop floor]", flush=True)
        results["kinds"]["serve hop floor (echo)"] = serve_hop_floor(free_port(), ns.rounds)
    finally:
        serve.shutdown()
        ray.shutdown()
        if redis_process is not None:
            redis_process.terminate()
    ns.out.mkdir(parents=True, exist_ok=True)
    (ns.out / "gateway_latency.json").write_text(json.dumps(results, indent=2) + "\n")
    (ns.out / "gateway_latency.md").write_text(render(results))
    print(render(results))
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Gateway added latency (benchmarks/gateway_latency.py)",
        "",
        f"Machine: {results['machine']}; {results['rounds']} interleaved rounds per kind.",
        "",
        "| request | mode | p50 ms | p90 ms | p99 ms | added p50 ms | added, paired median ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, modes in results["kinds"].items():
        for mode, m in modes.items():
            lines.append(
                f"| {kind} | {mode} | {m['p50_ms']} | {m['p90_ms']} | {m['p99_ms']} "
                f"| {m.get('added_p50_ms', '-')} | {m.get('added_paired_median_ms', '-')} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
