"""Knobs of the runtime's autoscaling policies (``policy_kwargs`` in a serve config).

Serve's default policy counts requests per replica and waits 30 s before scaling up.
These policies read what the replicas report (``record_autoscaling_stats``) and react
in seconds; every knob is validated strictly (an unknown one is an error, not ignored).
"""

from __future__ import annotations

from pydantic import Field

from runtime.config.llm import StrictModel


class Hysteresis(StrictModel):
    """When a wanted change is made.

    Up: the load asks for more replicas for ``upscale_delay_s`` in a row. Down: the load
    would fit in fewer replicas at ``downscale_headroom`` of each target, for
    ``downscale_delay_s`` in a row. The gap between the up and down thresholds is what
    keeps a steady load from flapping.
    """

    upscale_delay_s: float = Field(default=2.0, ge=0, le=600)
    downscale_delay_s: float = Field(default=20.0, ge=0, le=3600)
    downscale_headroom: float = Field(
        default=0.7,
        gt=0,
        lt=1,
        description="Scale down only to a count where the load stays under this share "
        "of every target.",
    )


class LLMScaling(Hysteresis):
    """``runtime.autoscaling:LLMPolicy``: queue depth and memory pressure per replica."""

    target_ongoing_per_replica: float = Field(
        default=8.0,
        gt=0,
        description="Sequences per replica (the engine's running plus waiting, plus "
        "requests queued in Serve's handles) to aim for.",
    )
    kv_cache_target: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Mean KV-cache use above this scales up, whatever the queue.",
    )
    gpu_memory_target: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Mean share of GPU memory in use (NVML) above this scales up; off by "
        "default, since vLLM reserves its memory up front.",
    )


class AgentScaling(Hysteresis):
    """``runtime.autoscaling:AgentPolicy``: turns running and queued per replica."""

    target_turns_per_replica: float = Field(
        default=32.0,
        gt=0,
        description="Turns in progress (running or waiting for a busy session) per replica.",
    )


class AgentLLMScaling(StrictModel):
    """``runtime.autoscaling:AgentLLMPolicy``, an application-level policy (the
    application's ``autoscaling_policy``) for an agent application with its own LLM
    deployment (``llm_server``): each deployment by its own signals, and the LLM also
    by the agents' backlog, before that backlog reaches the engine."""

    agents: AgentScaling = Field(default_factory=AgentScaling)
    llm: LLMScaling = Field(default_factory=LLMScaling)
    llm_sequences_per_turn: float = Field(
        default=1.0,
        gt=0,
        le=64,
        description="LLM sequences one agent turn in progress (running or queued) is "
        "expected to hold: 1 when turns mostly wait on the model, less when they spend "
        "their time in tools, more when a turn calls the model in parallel.",
    )
