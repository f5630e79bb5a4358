"""GPU memory from NVML (runtime/llm/gpu.py). No GPU here: ``FakeNVML`` is a named
stand-in for the ``pynvml`` module (three devices with fixed memory figures); the
reading on a real GPU is a device check (docs/autoscaling.md)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runtime.llm import gpu

GIB = 1 << 30


class FakeNVML:
    """Stand-in for pynvml: devices by index and UUID, memory in bytes."""

    def __init__(self) -> None:
        self.devices = [
            {"uuid": f"GPU-{i}", "used": (i + 1) * 10 * GIB, "total": 80 * GIB} for i in range(3)
        ]

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict[str, Any]:
        return next(d for d in self.devices if d["uuid"] == uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any]) -> Any:
        return SimpleNamespace(used=handle["used"], total=handle["total"])


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNVML:
    fake = FakeNVML()
    monkeypatch.setattr(gpu, "_nvml", fake)
    monkeypatch.setattr(gpu, "_failed", False)
    return fake


@pytest.mark.parametrize(
    ("visible", "used_gib", "total_gib"),
    [(None, 60, 240), ("1", 20, 80), ("0,2", 40, 160), ("GPU-2", 30, 80), ("2, GPU-0", 40, 160)],
)
def test_only_visible_gpus_count(
    nvml: FakeNVML,
    monkeypatch: pytest.MonkeyPatch,
    visible: str | None,
    used_gib: int,
    total_gib: int,
) -> None:
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert gpu.gpu_memory() == (used_gib * GIB, total_gib * GIB)
    assert gpu.gpu_memory_used_fraction() == pytest.approx(used_gib / total_gib)


def test_no_visible_gpu_or_no_nvml(nvml: FakeNVML, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu.gpu_memory_used_fraction() is None
    monkeypatch.setattr(gpu, "_nvml", None)
    monkeypatch.setattr(gpu, "_failed", True)  # no package or no driver: None, not an error
    assert gpu.gpu_memory() is None
