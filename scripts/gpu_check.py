"""GPU-memory reading on a real GPU (run on a machine with an NVIDIA GPU and a driver).

Checks ``runtime/llm/gpu.py`` (what ``LLMServer.record_autoscaling_stats`` reports as
``gpu_memory_used_fraction``) against ``nvidia-smi`` and against memory that PyTorch
allocates on the card, for each way ``CUDA_VISIBLE_DEVICES`` names a GPU; then feeds
the real readings to ``runtime.autoscaling.LLMPolicy`` with a ``gpu_memory_target``.

Needs only ``torch``, ``nvidia-ml-py`` and ``pydantic`` (no Ray, no vLLM): the
runtime's package ``__init__`` files, which import Ray, are skipped on purpose.

    python3 scripts/gpu_check.py [--out results.json]

Exit status 0 when every check holds; the JSON lists each reading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GIB = 1024**3


def _bare_packages() -> None:
    """Import runtime's leaf modules without its package ``__init__`` files."""
    for name in ("runtime", "runtime.config", "runtime.llm"):
        module = types.ModuleType(name)
        module.__path__ = [str(REPO / name.replace(".", "/"))]
        sys.modules[name] = module


def _reading(visible: str | None) -> Any:
    """``gpu_memory()`` in a fresh process with ``CUDA_VISIBLE_DEVICES`` = ``visible``."""
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    if visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = visible
    code = (
        f"import sys, json; sys.path.insert(0, {str(REPO)!r}); import scripts.gpu_check as c; "
        "c._bare_packages(); from runtime.llm import gpu; print(json.dumps(gpu.gpu_memory()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _smi() -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            "nvidia-smi",
            "--query-gpu=index,uuid,name,memory.used,memory.total",
            "--format=csv,noheader,nounits",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.strip().splitlines():
        index, uuid, name, used, total = (v.strip() for v in line.split(","))
        rows.append(
            {
                "index": int(index),
                "uuid": uuid,
                "name": name,
                "used_mib": int(used),
                "total_mib": int(total),
            }
        )
    return rows


def _policy(fraction: float, target: float) -> int:
    """LLMPolicy's decision for one replica whose GPU is ``fraction`` full."""
    from runtime.autoscaling import GPU_MEMORY_USED, LLMPolicy

    policy = LLMPolicy(gpu_memory_target=target, upscale_delay_s=0, target_ongoing_per_replica=1000)
    ctx = types.SimpleNamespace(  # Serve's AutoscalingContext fields the policy reads
        current_num_replicas=1,
        target_num_replicas=1,
        aggregated_metrics={GPU_MEMORY_USED: {"replica-0": fraction}},
        total_queued_requests=0,
        total_num_requests=0,
        capacity_adjusted_min_replicas=1,
        capacity_adjusted_max_replicas=4,
        current_time=time.time(),
        policy_state={},
    )
    replicas, _ = policy(ctx)
    return replicas


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--gib", type=float, default=20.0, help="GiB to allocate")
    ns = parser.parse_args()
    _bare_packages()
    import torch

    from runtime.llm import gpu

    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, **detail: Any) -> None:
        checks.append({"check": name, "ok": bool(ok), **detail})
        print(("PASS " if ok else "FAIL ") + name + " " + json.dumps(detail), flush=True)

    smi = _smi()
    first = smi[0]
    print("nvidia-smi:", json.dumps(smi), flush=True)
    total = first["total_mib"] * 1024**2
    # Every way a replica may be told its GPU: unset (all), index, UUID; none visible.
    for visible in (None, "0", first["uuid"]):
        used_total = _reading(visible)
        ok = used_total is not None and abs(used_total[1] - total) <= 64 * 1024**2
        check(
            f"total with CUDA_VISIBLE_DEVICES={visible!r} matches nvidia-smi",
            ok,
            reading=used_total,
            smi_total_mib=first["total_mib"],
        )
    for visible in ("", "-1"):
        value = _reading(visible)
        check(f"no reading with CUDA_VISIBLE_DEVICES={visible!r}", value is None, reading=value)

    torch.zeros(1, device="cuda")  # the CUDA context first: it takes memory of its own
    torch.cuda.synchronize()
    before = gpu.gpu_memory()
    smi_before = _smi()[0]["used_mib"]
    assert before is not None
    check(
        "used matches nvidia-smi (within 256 MiB)",
        abs(before[0] / 1024**2 - smi_before) <= 256,
        nvml_used_mib=before[0] // 1024**2,
        smi_used_mib=smi_before,
    )
    block = torch.empty(int(ns.gib * GIB), dtype=torch.uint8, device="cuda")
    block.fill_(1)
    torch.cuda.synchronize()
    after = gpu.gpu_memory()
    assert after is not None
    grown = (after[0] - before[0]) / GIB
    check(
        f"used grows by the {ns.gib:g} GiB allocated (within 0.5 GiB)",
        abs(grown - ns.gib) <= 0.5,
        grown_gib=round(grown, 3),
    )
    fraction_full = gpu.gpu_memory_used_fraction()
    assert fraction_full is not None
    del block
    torch.cuda.empty_cache()
    torch.cuda.synchronize()
    fraction_free = gpu.gpu_memory_used_fraction()
    assert fraction_free is not None
    check(
        "the fraction falls when the memory is freed",
        fraction_free < fraction_full - 0.1,
        full=round(fraction_full, 4),
        freed=round(fraction_free, 4),
    )
    # The policy on the real readings: a target between the two readings.
    target = round((fraction_full + fraction_free) / 2, 3)
    up, stay = _policy(fraction_full, target), _policy(fraction_free, target)
    check(
        "LLMPolicy scales up on the full reading and not on the freed one",
        up == 2 and stay == 1,
        target=target,
        replicas_full=up,
        replicas_freed=stay,
    )

    result = {
        "device": first["name"],
        "driver_smi": smi,
        "torch": torch.__version__,
        "checks": checks,
    }
    if ns.out:
        ns.out.write_text(json.dumps(result, indent=2))
    failed = [c["check"] for c in checks if not c["ok"]]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
