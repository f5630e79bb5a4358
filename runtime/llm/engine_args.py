"""Turning an ``LLMAppConfig`` into vLLM's own server arguments and replica settings.

The arguments go through vLLM's OpenAI-server argument parser, so the engine
and the OpenAI layer get exactly the defaults ``python -m
vllm.entrypoints.openai.api_server`` would, and ``engine.extra_args`` is
checked by vLLM itself.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path
from typing import Any

from runtime import _env
from runtime.config.errors import ConfigError
from runtime.config.llm import HubSource, LLMAppConfig
from runtime.config.placement import WORKER_KIND


def server_argv(config: LLMAppConfig, model: str) -> list[str]:
    """vLLM server flags for ``config``, with ``model`` a folder or hub id."""
    engine = config.engine
    argv = [
        "--model",
        model,
        "--served-model-name",
        config.served_name,
        "--dtype",
        config.dtype,
        "--tool-strict-level",
        engine.tool_strict_level,
        "--max-num-seqs",
        str(engine.max_num_seqs),
        "--tensor-parallel-size",
        str(engine.tensor_parallel_size),
    ]
    if engine.max_model_len is not None:
        argv += ["--max-model-len", str(engine.max_model_len)]
    if engine.max_num_batched_tokens is not None:
        argv += ["--max-num-batched-tokens", str(engine.max_num_batched_tokens)]
    if config.enforce_eager:
        argv.append("--enforce-eager")
    if config.accelerator == "cpu":
        # In-process engine: no executor processes besides the replica itself.
        argv += ["--distributed-executor-backend", "uni"]
    else:
        argv += ["--gpu-memory-utilization", str(engine.gpu_memory_utilization)]
        if engine.tensor_parallel_size > 1:
            # Workers go into the replica's placement group (see build_llm_app).
            argv += ["--distributed-executor-backend", "ray"]
    if engine.enable_prefix_caching is not None:
        argv.append(
            "--enable-prefix-caching"
            if engine.enable_prefix_caching
            else "--no-enable-prefix-caching"
        )
    if engine.seed is not None:
        argv += ["--seed", str(engine.seed)]
    if engine.tool_call_parser:
        argv += ["--enable-auto-tool-choice", "--tool-call-parser", engine.tool_call_parser]
    if engine.chat_template:
        argv += ["--chat-template", resolve_chat_template(engine.chat_template)]
    if isinstance(config.model, HubSource) and config.model.revision:
        argv += ["--revision", config.model.revision]
    return argv + list(engine.extra_args)


PACKAGED_TEMPLATES = Path(__file__).parent / "templates"


def resolve_chat_template(value: str) -> str:
    """A packaged template's name (e.g. ``chatml-tools``) -> its path; anything else as given."""
    packaged = PACKAGED_TEMPLATES / f"{value}.jinja"
    return str(packaged) if packaged.is_file() else value


def parse_server_args(config: LLMAppConfig, model: str) -> argparse.Namespace:
    """Parse :func:`server_argv` with vLLM's parser; a bad flag is a ``ConfigError``."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="LLMServer", exit_on_error=False))
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args: argparse.Namespace = parser.parse_args(server_argv(config, model))
        validate_parsed_serve_args(args)
    except SystemExit:
        detail = stderr.getvalue().strip().splitlines()
        raise ConfigError(
            "args.engine", [f"vLLM rejected the engine flags: {detail[-1] if detail else '?'}"]
        ) from None
    except (argparse.ArgumentError, TypeError, ValueError) as err:
        raise ConfigError("args.engine", [f"vLLM rejected the engine flags: {err}"]) from None
    args.disable_log_stats = False  # the replica reads queue and KV-cache figures from stats
    args.disable_uvicorn_access_log = True
    return args


def replica_env(config: LLMAppConfig) -> dict[str, str]:
    """Environment of an LLM replica's process (its ``runtime_env.env_vars``)."""
    env = {
        # No usage reporting from the engine: clusters often have no egress.
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    if config.accelerator == "cpu":
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        env["VLLM_CPU_KVCACHE_SPACE"] = str(config.engine.cpu_kv_cache_gib)
        env.update(cpu_engine_env())
    if not isinstance(config.model, HubSource):
        env["HF_HUB_OFFLINE"] = "1"
    explicit_cache = _env.explicit_cache_dir()
    if explicit_cache:
        # Same cache on a local cluster; on a real cluster each node has its own default.
        env[_env.RUNTIME_CACHE_DIR] = str(explicit_cache)
        env["VLLM_CACHE_ROOT"] = str(explicit_cache / "vllm")
    return env


#: The CPU engine's OpenMP threads sleep when they wait (a value set already wins).
#: Spinning, they take the cores the replica's own Python (and Serve's proxy, the
#: gateway, Ray) need to stream its tokens: measured on SmolLM2, 32 streams through the
#: gateway, 234 against 340 output tokens/s, bare vLLM unchanged (docs/llm-serving.md).
OMP_WAIT_POLICY = "OMP_WAIT_POLICY"


def cpu_engine_env() -> dict[str, str]:
    """The CPU engine's OpenMP settings (``OMP_WAIT_POLICY``), the environment's first."""
    return {OMP_WAIT_POLICY: os.environ.get(OMP_WAIT_POLICY, "PASSIVE")}


def engine_threads(config: LLMAppConfig) -> int:
    """OpenMP threads for the CPU engine on this node (call it on the replica)."""
    return config.engine.cpu_threads or len(os.sched_getaffinity(0))


def gpus_per_replica(config: LLMAppConfig) -> int:
    """GPUs one replica holds (logical ones with the CPU engine on a GPU worker)."""
    tp = config.engine.tensor_parallel_size
    if tp > 1:
        return tp
    return 1 if config.accelerator == "gpu" or config.worker_kind == "gpu" else 0


def replica_options(config: LLMAppConfig) -> dict[str, Any]:
    """Serve deployment options that follow from the config (placement, resources).

    A replica on a GPU worker selects the node label ``worker-kind: gpu`` and takes a
    GPU per engine rank; with the CPU engine that GPU is a logical one the node declares
    (the local test cluster), so Ray's accounting and its autoscaler see GPU demand.
    """
    actor: dict[str, Any] = {
        "num_cpus": config.num_cpus,
        "runtime_env": {"env_vars": replica_env(config)},
    }
    options: dict[str, Any] = {
        # The engine batches internally: let many requests reach it at once.
        "max_ongoing_requests": max(4 * config.engine.max_num_seqs, 64),
        # Engine start (and a first model conversion) takes a while.
        "health_check_timeout_s": 60,
    }
    kind = config.worker_kind
    selector = {WORKER_KIND: kind} if kind else None
    tp = config.engine.tensor_parallel_size
    if tp > 1:
        # The replica holds the first bundle, one Ray worker per GPU the rest, all on
        # one node; each bundle selects the worker kind.
        options["placement_group_bundles"] = [{"CPU": config.num_cpus}] + [{"GPU": 1}] * tp
        options["placement_group_strategy"] = "STRICT_PACK"
        if selector:
            options["placement_group_bundle_label_selector"] = [selector]
    else:
        if gpus_per_replica(config):
            actor["num_gpus"] = 1
        if selector:
            actor["label_selector"] = selector
    options["ray_actor_options"] = actor
    return options
