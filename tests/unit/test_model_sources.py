"""Model sources and the once-only, lock-protected build into the cache (unit tier)."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from runtime.config import HubSource, LocalFolderSource, TinyRandomSource
from runtime.models.sources import ModelSourceError, materialize, resolve_model


def _slow_build(dest: Path) -> None:
    time.sleep(1.0)  # long enough for the second process to arrive mid-build
    (dest / "config.json").write_text("{}")
    with open(dest.parent / "builds.log", "a") as log:
        log.write("built\n")


def _worker(dest: str, out: mp.Queue[str]) -> None:
    out.put(str(materialize(Path(dest), _slow_build)))


def test_concurrent_builds_run_once(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    ctx = mp.get_context("spawn")
    out: mp.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(dest), out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert {out.get(timeout=5), out.get(timeout=5)} == {str(dest)}
    assert (tmp_path / "builds.log").read_text() == "built\n"  # one build for two starts
    assert json.loads((dest / ".complete.json").read_text())["built_by_pid"] > 0
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_failed_build_leaves_nothing_complete(tmp_path: Path) -> None:
    dest = tmp_path / "model"

    def broken(d: Path) -> None:
        (d / "half-written").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        materialize(dest, broken)
    assert not dest.exists()
    assert materialize(dest, _slow_build) == dest  # the next start builds it properly
    assert (dest / "config.json").exists()


def test_tiny_random_model_is_built_and_loadable(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(resolve_model(TinyRandomSource(source="tiny-random"), cache_dir=tmp_path))
    assert folder.parent == tmp_path / "models"
    config = AutoConfig.from_pretrained(folder)
    assert (config.hidden_size, config.num_hidden_layers) == (128, 2)
    tok = AutoTokenizer.from_pretrained(folder)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_local_folder_must_be_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_model(LocalFolderSource(source="local", path=tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(LocalFolderSource(source="local", path=tmp_path)) == str(tmp_path)


def test_hub_id_is_passed_to_vllm() -> None:
    assert resolve_model(HubSource(source="hub", id="org/model")) == "org/model"
