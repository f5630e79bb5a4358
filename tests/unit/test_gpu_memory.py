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
    """Stand-in for pynvml: devices by index and UUID, memory in bytes. The version-1
    call counts the driver's reservation (0.5 GiB) as used; version 2 does not."""

    nvmlMemory_v2 = 0x02000028
    RESERVED = GIB // 2

    def __init__(self, v2: bool = True) -> None:
        self.v2 = v2
        self.devices = [
            {"uuid": f"GPU-{i}", "used": (i + 1) * 10 * GIB, "total": 80 * GIB} for i in range(3)
        ]

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:
        return self.devices[i]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> dict[str, Any]:
        return next(d for d in self.devices if d["uuid"] == uuid)

    def nvmlDeviceGetMemoryInfo(self, handle: dict[str, Any], version: int | None = None) -> Any:
        if version is None:
            return SimpleNamespace(used=handle["used"] + self.RESERVED, total=handle["total"])
        if not self.v2 or version != self.nvmlMemory_v2:
            raise RuntimeError("NVML_ERROR_FUNCTION_NOT_FOUND")
        return SimpleNamespace(used=handle["used"], reserved=self.RESERVED, total=handle["total"])


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


def test_older_driver_falls_back_to_version_1(
    nvml: FakeNVML, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu.gpu_memory() == (20 * GIB, 80 * GIB)  # version 2: the reservation is not used
    nvml.v2 = False
    assert gpu.gpu_memory() == (20 * GIB + FakeNVML.RESERVED, 80 * GIB)
