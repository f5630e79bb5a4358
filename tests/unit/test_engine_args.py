"""The config -> vLLM flags mapping, checked by vLLM's own parser (unit tier)."""

from __future__ import annotations

import pytest

from runtime.config import ConfigError, LLMAppConfig
from runtime.llm.engine_args import parse_server_args, replica_env, replica_options


def _config(**overrides: object) -> LLMAppConfig:
    return LLMAppConfig.model_validate({"model": {"source": "tiny-random"}, **overrides})


def test_cpu_flags_parse_with_vllms_parser() -> None:
    cfg = _config(
        engine={
            "max_model_len": 512,
            "tool_call_parser": "hermes",
            "chat_template": "chatml-tools",
            "extra_args": ["--max-logprobs", "3"],
        }
    )
    args = parse_server_args(cfg, "/models/x")
    assert args.model == "/models/x"
    assert args.served_model_name == ["tiny-random"]
    assert args.max_model_len == 512
    assert args.distributed_executor_backend == "uni"
    assert args.enforce_eager is True
    assert args.enable_auto_tool_choice and args.tool_call_parser == "hermes"
    assert args.chat_template.endswith("runtime/llm/templates/chatml-tools.jinja")
    assert args.max_logprobs == 3


def test_unknown_extra_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="vLLM rejected the engine flags"):
        parse_server_args(_config(engine={"extra_args": ["--no-such-flag"]}), "/m")


def test_cpu_replica_env_and_options() -> None:
    cfg = _config(engine={"cpu_kv_cache_gib": 2})
    env = replica_env(cfg)
    assert env["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # the engine's threads sleep when they wait
    options = replica_options(cfg)
    assert "num_gpus" not in options["ray_actor_options"]
    assert options["max_ongoing_requests"] >= cfg.engine.max_num_seqs


def test_the_cpu_engines_wait_policy_can_be_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert replica_env(_config())["OMP_WAIT_POLICY"] == "ACTIVE"


def test_gpu_options_tensor_parallel() -> None:
    cfg = LLMAppConfig.model_validate(
        {
            "model": {"source": "hub", "id": "org/m"},
            "accelerator": "gpu",
            "engine": {"tensor_parallel_size": 2},
        }
    )
    options = replica_options(cfg)
    assert options["placement_group_bundles"][1:] == [{"GPU": 1}, {"GPU": 1}]
    assert "HF_HUB_OFFLINE" not in replica_env(cfg)
    assert "OMP_WAIT_POLICY" not in replica_env(cfg)
    args = parse_server_args(cfg, "org/m")
    assert args.distributed_executor_backend == "ray"
    assert args.enforce_eager is False
    single = replica_options(
        LLMAppConfig.model_validate(
            {"model": {"source": "hub", "id": "org/m"}, "accelerator": "gpu"}
        )
    )
    assert single["ray_actor_options"]["num_gpus"] == 1


def test_cpu_engine_threads_default_to_the_cores_the_replica_may_use() -> None:
    import os

    from runtime.llm.engine_args import engine_threads

    assert engine_threads(_config()) == len(os.sched_getaffinity(0))
    assert engine_threads(_config(engine={"cpu_threads": 3})) == 3


@pytest.mark.parametrize(
    ("args", "selector", "gpus"),
    [
        ({}, None, None),  # the CPU engine anywhere (`make run`'s one node)
        ({"placement": "cpu-worker"}, {"worker-kind": "cpu"}, None),
        # The CPU engine on a node that declares a logical GPU (the local test cluster).
        ({"placement": "gpu-worker"}, {"worker-kind": "gpu"}, 1),
        ({"accelerator": "gpu"}, {"worker-kind": "gpu"}, 1),
        ({"accelerator": "gpu", "placement": "any"}, None, 1),
    ],
)
def test_replica_placement(args: dict, selector: dict | None, gpus: int | None) -> None:
    actor = replica_options(_config(**args))["ray_actor_options"]
    assert actor.get("label_selector") == selector
    assert actor.get("num_gpus") == gpus
    assert actor["runtime_env"]["env_vars"]  # the engine's settings stay with the options


def test_tensor_parallel_bundles_select_gpu_workers() -> None:
    cfg = LLMAppConfig.model_validate(
        {
            "model": {"source": "hub", "id": "org/m"},
            "accelerator": "gpu",
            "engine": {"tensor_parallel_size": 4},
        }
    )
    options = replica_options(cfg)
    assert options["placement_group_bundle_label_selector"] == [{"worker-kind": "gpu"}]
    assert "label_selector" not in options["ray_actor_options"]  # the bundles place it
