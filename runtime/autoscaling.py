"""Autoscaling policies: pure functions of Serve's ``AutoscalingContext``.

In a serve config::

    autoscaling_config:
      min_replicas: 1
      max_replicas: 4
      policy:
        policy_function: runtime.autoscaling:LLMPolicy     # or AgentPolicy
        policy_kwargs: {target_ongoing_per_replica: 8, upscale_delay_s: 2}

or, for an agent application with its own LLM deployment (``llm_server``), once for
the application (its deployments keep their ``autoscaling_config`` bounds)::

    autoscaling_policy:
      policy_function: runtime.autoscaling:AgentLLMPolicy
      policy_kwargs: {agents: {target_turns_per_replica: 32}, llm_sequences_per_turn: 1}

Serve makes one instance with the kwargs (checked by ``runtime.config.autoscaling``)
and calls it every tick; its only memory is the ``policy_state`` Serve hands back.

- ``LLMPolicy`` reads what ``LLMServer.record_autoscaling_stats`` reports: the engine's
  running and waiting sequences, KV-cache use and (on GPUs) the share of GPU memory in
  use; plus requests queued in Serve's handles. The queue asks for
  ``ceil(load / target_ongoing_per_replica)`` replicas; KV-cache or GPU-memory pressure
  above its target asks for ``ceil(replicas * use / target)``, queue or not.
- ``AgentPolicy`` reads ``AgentServer``'s running and queued turns, plus requests
  waiting in Serve's handles (a replica at ``max_ongoing_requests`` takes no more).
- ``AgentLLMPolicy`` does both for the two deployments of one application and scales
  the LLM ahead: to carry the sequences the agents' turns in progress will ask for.

Both scale up to what the load asks once it has asked for ``upscale_delay_s``, and
down only to the fewest replicas that keep every signal under ``downscale_headroom``
of its target, once that has held for ``downscale_delay_s``. Between the two thresholds
nothing moves: a steady load does not flap. With ``min_replicas: 0`` a deployment with
no replica scales to one as soon as a request waits for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.config.autoscaling import AgentLLMScaling, AgentScaling, Hysteresis, LLMScaling

#: Metric names the replicas report (``record_autoscaling_stats``).
ENGINE_RUNNING = "engine_running"
ENGINE_WAITING = "engine_waiting"
KV_CACHE_USAGE = "kv_cache_usage"
GPU_MEMORY_USED = "gpu_memory_used_fraction"
TURNS_RUNNING = "turns_running"
TURNS_QUEUED = "turns_queued"

#: Deployment names of an agent application with its own LLM (``llm_server``).
from runtime.names import AGENT_DEPLOYMENT, LLM_DEPLOYMENT  # noqa: E402


@dataclass(frozen=True)
class Want:
    """What the load asks for: ``up`` replicas to carry it at the targets; ``floor``, the
    fewest that carry it under ``downscale_headroom`` of the targets (``floor >= up``)."""

    up: int
    floor: int


def _ceil(x: float) -> int:
    return max(0, math.ceil(x - 1e-9))


def want_for(load: float, target: float, headroom: float) -> Want:
    """Replicas for ``load`` units at ``target`` units per replica."""
    return Want(up=_ceil(load / target), floor=_ceil(load / (target * headroom)))


def pressure_want(current: int, use: float, target: float, headroom: float) -> Want:
    """Replicas that bring a shared resource used at ``use`` (mean over ``current``
    replicas) under ``target``: the load moves to the new replicas in proportion."""
    if current <= 0 or use <= 0:
        return Want(0, 0)
    load = current * use
    return Want(
        up=_ceil(load / target) if use > target else 0, floor=_ceil(load / (target * headroom))
    )


def combine(*wants: Want) -> Want:
    return Want(up=max(w.up for w in wants), floor=max(w.floor for w in wants))


def decide(
    current: int,
    want: Want,
    min_replicas: int,
    max_replicas: int,
    now: float,
    state: Mapping[str, Any] | None,
    hysteresis: Hysteresis,
) -> tuple[int, dict[str, Any]]:
    """The replica count for this tick, and the state for the next one."""
    state = dict(state or {})
    low, high = min_replicas, max(min_replicas, max_replicas)
    if current < low or current > high:  # bounds changed: move at once
        return min(max(current, low), high), {}
    if current == 0 and want.up > 0:  # a request waits for a scaled-to-zero deployment
        return min(want.up, high), {}
    if want.up > current and current < high:
        since = state.get("up_since", now)
        if now - since >= hysteresis.upscale_delay_s:
            return min(want.up, high), {}
        return current, {"up_since": since}
    target = max(want.floor, low)
    if target < current:
        since = state.get("down_since", now)
        if now - since >= hysteresis.downscale_delay_s:
            return target, {}
        return current, {"down_since": since}
    return current, {}


def _values(metrics: Mapping[str, Mapping[Any, float]] | None, name: str) -> list[float]:
    return [float(v) for v in ((metrics or {}).get(name) or {}).values()]


def llm_want(
    current: int,
    metrics: Mapping[str, Mapping[Any, float]] | None,
    handle_queued: float,
    total_requests: float,
    config: LLMScaling,
) -> Want:
    """What an LLM deployment's load asks for (see the module's docstring)."""
    h = config.downscale_headroom
    running = _values(metrics, ENGINE_RUNNING)
    waiting = _values(metrics, ENGINE_WAITING)
    if running or waiting:
        load = sum(running) + sum(waiting) + max(0.0, handle_queued)
    else:  # no engine figures yet (replicas starting): Serve's own count
        load = max(0.0, total_requests)
    wants = [want_for(load, config.target_ongoing_per_replica, h)]
    kv = _values(metrics, KV_CACHE_USAGE)
    if kv:
        wants.append(pressure_want(current, sum(kv) / len(kv), config.kv_cache_target, h))
    gpu = _values(metrics, GPU_MEMORY_USED)
    if gpu and config.gpu_memory_target is not None:
        wants.append(pressure_want(current, sum(gpu) / len(gpu), config.gpu_memory_target, h))
    return combine(*wants)


def agent_load(
    metrics: Mapping[str, Mapping[Any, float]] | None,
    handle_queued: float,
    total_requests: float,
) -> float:
    """Turns in progress: running and queued in the replicas, plus requests waiting in
    Serve's handles for a free replica (Serve's own count until replicas report)."""
    turns = _values(metrics, TURNS_RUNNING) + _values(metrics, TURNS_QUEUED)
    return sum(turns) + max(0.0, handle_queued) if turns else max(0.0, total_requests)


def agent_want(
    metrics: Mapping[str, Mapping[Any, float]] | None,
    handle_queued: float,
    total_requests: float,
    config: AgentScaling,
) -> Want:
    """What an agent deployment's load asks for."""
    load = agent_load(metrics, handle_queued, total_requests)
    return want_for(load, config.target_turns_per_replica, config.downscale_headroom)


def _target(ctx: Any) -> int:
    """The count Serve is heading to: decisions move from it, not from the replicas
    already running (a replica still starting must not read as a wish to scale down)."""
    target = ctx.target_num_replicas
    return int(target if target is not None else ctx.current_num_replicas)


class LLMPolicy:
    """Serve's ``policy_function`` for LLM deployments (kwargs: ``LLMScaling``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.config = LLMScaling.model_validate(kwargs)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        want = llm_want(
            int(ctx.current_num_replicas),
            ctx.aggregated_metrics,
            ctx.total_queued_requests,
            ctx.total_num_requests,
            self.config,
        )
        return _decide(ctx, want, self.config)


class AgentPolicy:
    """Serve's ``policy_function`` for agent deployments (kwargs: ``AgentScaling``)."""

    def __init__(self, **kwargs: Any) -> None:
        self.config = AgentScaling.model_validate(kwargs)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        want = agent_want(
            ctx.aggregated_metrics, ctx.total_queued_requests, ctx.total_num_requests, self.config
        )
        return _decide(ctx, want, self.config)


class AgentLLMPolicy:
    """Serve's application-level ``autoscaling_policy`` for an agent application with
    its own LLM deployment (kwargs: ``AgentLLMScaling``).

    The agents scale as under ``AgentPolicy``. The LLM scales as under ``LLMPolicy`` or
    to carry ``llm_sequences_per_turn`` sequences for every turn in progress, whichever
    asks for more: a backlog of turns queued in the agents scales the model before it
    reaches the engine's queue. Serve hands it every deployment's context at once.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.config = AgentLLMScaling.model_validate(kwargs)

    def __call__(
        self, contexts: Mapping[Any, Any]
    ) -> tuple[dict[Any, int], dict[Any, dict[str, Any]]]:
        by_name = {getattr(dep, "name", dep): (dep, ctx) for dep, ctx in contexts.items()}
        decisions: dict[Any, int] = {}
        states: dict[Any, dict[str, Any]] = {}
        turns: float | None = None
        if AGENT_DEPLOYMENT in by_name:
            dep, ctx = by_name[AGENT_DEPLOYMENT]
            cfg = self.config.agents
            turns = agent_load(
                ctx.aggregated_metrics, ctx.total_queued_requests, ctx.total_num_requests
            )
            want = want_for(turns, cfg.target_turns_per_replica, cfg.downscale_headroom)
            decisions[dep], states[dep] = _decide(ctx, want, cfg)
        if LLM_DEPLOYMENT in by_name:
            dep, ctx = by_name[LLM_DEPLOYMENT]
            cfg_llm = self.config.llm
            want = llm_want(
                int(ctx.current_num_replicas),
                ctx.aggregated_metrics,
                ctx.total_queued_requests,
                ctx.total_num_requests,
                cfg_llm,
            )
            if turns is not None:
                sequences = turns * self.config.llm_sequences_per_turn
                ahead = want_for(
                    sequences, cfg_llm.target_ongoing_per_replica, cfg_llm.downscale_headroom
                )
                want = combine(want, ahead)
            decisions[dep], states[dep] = _decide(ctx, want, cfg_llm)
        return decisions, states


def _decide(ctx: Any, want: Want, hysteresis: Hysteresis) -> tuple[int, dict[str, Any]]:
    return decide(
        _target(ctx),
        want,
        ctx.capacity_adjusted_min_replicas,
        ctx.capacity_adjusted_max_replicas,
        ctx.current_time,
        ctx.policy_state,
        hysteresis,
    )
