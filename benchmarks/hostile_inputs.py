"""Crafted input against the redactor and the gateway: what a hostile key holder's text
costs.

Two parts:

* **the redactor, in-process**: the time to redact crafted text of 12.5-100 KB, with
  the runtime's redactor and, as the baseline in the same run, the key=value pattern
  it had before (which rescanned a run of "key-key-…" from every dash: quadratic);
* **a running gateway** (``--url`` and ``--key``, e.g. on ``make run``): the time to
  answer a chat request whose ``model`` is 100 KB of crafted text, and the latency of
  ordinary requests (``GET /v1/models``) sent while it is answered, against the same
  requests sent alone.

Writes JSON, Markdown and a PNG plot (``--out``, default benchmarks/results/).

    python benchmarks/hostile_inputs.py
    python benchmarks/hostile_inputs.py --url http://127.0.0.1:8000 --key "$RUNTIME_API_KEY"
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import nearest_rank  # benchmarks/common.py

from runtime.telemetry import redact

SIZES = (12_500, 25_000, 50_000, 100_000)
#: Crafted text, by name: each repeats a unit that starts a match and then fails it.
UNITS = {
    "key-dashes": "key-",
    "jwt-dashes": "eyJ-",
    "token-pairs": "x_token= ",
    "bearer-words": "bearer ",
}
#: The key=value pattern before this benchmark's change (for the baseline only).
PREVIOUS_PAIR = re.compile(r"\b([\w-]++)(\"?'?\s*[:=]\s*\"?'?)([^\s\"',;&}]{4,})")


def crafted(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def timed(fn: Any, text: str) -> float:
    start = time.perf_counter()
    fn(text)
    return (time.perf_counter() - start) * 1000


def redactor_part() -> dict[str, Any]:
    current = redact.Redactor()
    results: dict[str, Any] = {}
    for name, unit in UNITS.items():
        rows = []
        for size in SIZES:
            text = crafted(unit, size)
            rows.append(
                {
                    "chars": size,
                    "current_ms": min(timed(current.redact, text) for _ in range(3)),
                    "previous_pattern_ms": timed(lambda t: PREVIOUS_PAIR.sub("", t), text),
                }
            )
        results[name] = rows
    return results


def gateway_part(url: str, key: str, benign: int) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    client = httpx.Client(base_url=url, headers=headers, timeout=600)

    def models_ms() -> float:
        start = time.perf_counter()
        client.get("/v1/models").raise_for_status()
        return (time.perf_counter() - start) * 1000

    alone = [models_ms() for _ in range(benign)]
    body = {"model": crafted("key-", 100_000), "messages": [{"role": "user", "content": "hi"}]}
    answer: dict[str, Any] = {}

    def hostile() -> None:
        start = time.perf_counter()
        response = client.post("/v1/chat/completions", json=body)
        answer.update(
            ms=(time.perf_counter() - start) * 1000,
            status=response.status_code,
            body_bytes=len(response.content),
        )

    thread = threading.Thread(target=hostile)
    thread.start()
    during = []
    while thread.is_alive() or len(during) < benign:
        during.append(models_ms())
        if len(during) >= 10 * benign and not thread.is_alive():
            break
    thread.join()

    def stats(ms: list[float]) -> dict[str, float]:
        return {"p50_ms": statistics.median(ms), "p99_ms": nearest_rank(ms, 0.99), "n": len(ms)}

    return {"crafted_request": answer, "benign_alone": stats(alone), "benign_during": stats(during)}


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Crafted input: the redactor and the gateway",
        "",
        f"Machine: {results['machine']}. Times are one pass (the current redactor: best of",
        "three, every pattern). `previous pattern` is the one key=value pattern the redactor",
        "had before its fix, alone, run in the same process as the baseline.",
        "",
        "| input | chars | current (ms) | previous pattern (ms) |",
        "|---|---:|---:|---:|",
    ]
    for name, rows in results["redactor"].items():
        for r in rows:
            current, previous = r["current_ms"], r["previous_pattern_ms"]
            lines.append(f"| {name} | {r['chars']} | {current:.2f} | {previous:.1f} |")
    gateway = results.get("gateway")
    if gateway:
        c, a, d = gateway["crafted_request"], gateway["benign_alone"], gateway["benign_during"]
        lines += [
            "",
            f"## A running gateway ({gateway['url']})",
            "",
            f"A chat request whose `model` is 100 KB of crafted text: HTTP {c['status']} in "
            f"{c['ms']:.1f} ms ({c['body_bytes']} bytes of answer).",
            "",
            "| `GET /v1/models` | p50 (ms) | p99 (ms) | n |",
            "|---|---:|---:|---:|",
            f"| alone | {a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {a['n']} |",
            f"| while the crafted request is answered | {d['p50_ms']:.1f} | {d['p99_ms']:.1f} "
            f"| {d['n']} |",
        ]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rows in results["redactor"].items():
        chars = [r["chars"] / 1000 for r in rows]
        ax.plot(chars, [r["current_ms"] for r in rows], marker="o", label=f"{name}: current")
        ax.plot(
            chars,
            [r["previous_pattern_ms"] for r in rows],
            marker="x",
            linestyle="--",
            label=f"{name}: previous pattern",
        )
    ax.set_yscale("log")
    ax.set_xlabel("crafted input (thousand chars)")
    ax.set_ylabel("time to redact (ms, log scale)")
    ax.set_title("Redacting crafted text")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running gateway (e.g. http://127.0.0.1:8000)")
    parser.add_argument("--key", help="an API key of that gateway")
    parser.add_argument("--benign", type=int, default=20, help="ordinary requests per phase")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    if bool(args.url) != bool(args.key):
        parser.error("--url and --key go together")
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "redactor": redactor_part(),
    }
    if args.url:
        results["gateway"] = {"url": args.url, **gateway_part(args.url, args.key, args.benign)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "hostile_inputs.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "hostile_inputs.md").write_text(render(results))
    plot(results, args.out / "hostile_inputs.png")
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
