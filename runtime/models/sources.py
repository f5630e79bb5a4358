"""Resolving a configured model source to something vLLM can load.

Models made locally (the SmolLM2 conversion, the tiny random model) are built
once into the cache folder. Building is safe when several processes start at
once: one builds under a file lock into a temporary folder and renames it into
place; the others wait on the lock and then find the finished folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from runtime import _env
from runtime.config.llm import (
    HubSource,
    LocalFolderSource,
    ModelSource,
    SmolLM2Source,
    TinyRandomSource,
)
from runtime.models import smollm2, tiny_random

_COMPLETE = ".complete.json"

#: Models the runtime can build locally, by source name -> (cache folder name, builder).
LOCAL_MODELS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "smollm2": (smollm2.FOLDER_NAME, smollm2.convert),
    "tiny-random": (tiny_random.FOLDER_NAME, tiny_random.build),
}


class ModelSourceError(RuntimeError):
    """A model source cannot be resolved (missing folder, missing package)."""


def materialize(dest: Path, build: Callable[[Path], None], lock_timeout_s: float = 600) -> Path:
    """Build ``dest`` with ``build(tmp_dir)`` unless it is complete already.

    Safe across processes: the build runs under ``dest.lock``; a folder is
    complete only once its marker file exists, which is written before the
    atomic rename, so a crash mid-build leaves nothing that looks complete.
    """
    if (dest / _COMPLETE).exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock", timeout=lock_timeout_s):
        if (dest / _COMPLETE).exists():
            return dest
        tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            started = time.monotonic()
            build(tmp)
            marker = {"built_by_pid": os.getpid(), "seconds": time.monotonic() - started}
            (tmp / _COMPLETE).write_text(json.dumps(marker))
            if dest.exists():  # an incomplete folder from a build that died
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def prepare_local_model(name: str, cache_dir: Path | None = None) -> Path:
    """Build (once) and return the folder of a local model: ``smollm2`` or ``tiny-random``."""
    if name not in LOCAL_MODELS:
        raise ModelSourceError(
            f"unknown local model {name!r}; choose one of {', '.join(sorted(LOCAL_MODELS))}"
        )
    folder, build = LOCAL_MODELS[name]
    root = cache_dir or _env.cache_dir()
    return materialize(root / "models" / folder, build)


def resolve_model(source: ModelSource, cache_dir: Path | None = None) -> str:
    """What vLLM's ``--model`` gets for this source: a local folder, or a hub id."""
    match source:
        case SmolLM2Source() | TinyRandomSource():
            return str(prepare_local_model(source.source, cache_dir))
        case LocalFolderSource(path=path):
            folder = path.expanduser()
            if not (folder / "config.json").is_file():
                raise ModelSourceError(
                    f"model.path {str(folder)!r} is not a Hugging Face model folder "
                    "(no config.json there); point it at a folder made by save_pretrained"
                )
            return str(folder.resolve())
        case HubSource(id=hub_id):
            return hub_id
    raise AssertionError(f"unhandled model source {source!r}")
