"""GPU memory in use, from NVML (``nvidia-ml-py``), for the autoscaling policy.

Only the GPUs this process may use count: ``CUDA_VISIBLE_DEVICES`` (Ray sets it for a
replica with ``num_gpus``) as indices or UUIDs; all GPUs when it is unset. ``None``
when there is no NVML, no driver or no visible GPU (the CPU engine: its own KV-cache
figure stands in).

"Used" is NVML's version-2 figure, the one ``nvidia-smi`` shows: memory the processes
hold, without the driver's reservation (about 480 MiB on an idle H100, which the
version-1 call counts as used). Drivers without the version-2 call fall back to it.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger("ray.serve")

_nvml: Any = None
_failed = False


def _load() -> Any:
    global _nvml, _failed
    if _nvml is None and not _failed:
        try:
            import pynvml

            pynvml.nvmlInit()
            _nvml = pynvml
        except Exception as exc:  # no package, no driver, no GPU
            _failed = True
            logger.info("no GPU memory figures (NVML unavailable: %s)", type(exc).__name__)
    return _nvml


def _handles(nvml: Any) -> list[Any]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    handles = []
    for item in (v.strip() for v in visible.split(",")):
        if not item or item == "-1":
            continue
        if item.isdigit():
            handles.append(nvml.nvmlDeviceGetHandleByIndex(int(item)))
        else:
            handles.append(nvml.nvmlDeviceGetHandleByUUID(item))
    return handles


def _memory_info(nvml: Any, handle: Any) -> Any:
    version = getattr(nvml, "nvmlMemory_v2", None)
    if version is not None:
        try:
            return nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except Exception as exc:  # an older driver: no version-2 call
            logger.debug("NVML memory v2 unavailable (%s): version 1", type(exc).__name__)
    return nvml.nvmlDeviceGetMemoryInfo(handle)


def gpu_memory() -> tuple[int, int] | None:
    """(bytes used, bytes total) over the visible GPUs, or None."""
    nvml = _load()
    if nvml is None:
        return None
    try:
        handles = _handles(nvml)
        if not handles:
            return None
        infos = [_memory_info(nvml, h) for h in handles]
    except Exception as exc:
        logger.warning("reading GPU memory failed: %s", type(exc).__name__)
        return None
    return sum(int(i.used) for i in infos), sum(int(i.total) for i in infos)


def gpu_memory_used_fraction() -> float | None:
    memory = gpu_memory()
    if memory is None or memory[1] <= 0:
        return None
    return memory[0] / memory[1]
