"""The autoscaling policies on fabricated Serve contexts (unit tier), with property tests:
monotone in load, bounded by min and max, no oscillation under a steady load."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ray.serve._private.common import DeploymentID, ReplicaID
from ray.serve.config import AutoscalingContext

from runtime import autoscaling as a
from runtime.config.autoscaling import AgentScaling, LLMScaling

DEPLOYMENT = DeploymentID(name="LLMServer", app_name="llm")


def context(
    current: int,
    per_replica: dict[str, list[float]] | None = None,
    *,
    requests: float = 0.0,
    queued: float = 0.0,
    min_replicas: int = 1,
    max_replicas: int = 8,
    now: float = 100.0,
    state: dict[str, Any] | None = None,
    target: int | None = None,
    deployment: DeploymentID = DEPLOYMENT,
) -> AutoscalingContext:
    replicas = [ReplicaID(unique_id=f"r{i}", deployment_id=deployment) for i in range(current)]
    metrics = {
        name: {replicas[i]: v for i, v in enumerate(values)}
        for name, values in (per_replica or {}).items()
    }
    return AutoscalingContext(
        deployment_id=deployment,
        deployment_name=deployment.name,
        app_name=deployment.app_name,
        current_num_replicas=current,
        running_replicas=replicas,
        target_num_replicas=current if target is None else target,
        total_num_requests=requests,
        total_queued_requests=queued,
        aggregated_metrics=metrics,
        raw_metrics=None,
        capacity_adjusted_min_replicas=min_replicas,
        capacity_adjusted_max_replicas=max_replicas,
        policy_state=state or {},
        last_scale_up_time=None,
        last_scale_down_time=None,
        current_time=now,
        config=None,
    )


def engine(current: int, ongoing_each: float, kv: float = 0.1) -> dict[str, list[float]]:
    return {
        a.ENGINE_RUNNING: [ongoing_each] * current,
        a.ENGINE_WAITING: [0.0] * current,
        a.KV_CACHE_USAGE: [kv] * current,
    }


POLICY = a.LLMPolicy(target_ongoing_per_replica=8, upscale_delay_s=2, downscale_delay_s=10)


def test_queue_depth_scales_up_after_the_delay() -> None:
    ctx = context(1, engine(1, 30))  # 30 sequences, 8 per replica: 4 replicas
    replicas, state = POLICY(ctx)
    assert replicas == 1 and state == {"up_since": 100.0}
    replicas, state = POLICY(context(1, engine(1, 30), now=101.9, state=state))
    assert replicas == 1
    replicas, state = POLICY(context(1, engine(1, 30), now=102.0, state=state))
    assert (replicas, state) == (4, {})


def test_a_replica_still_starting_is_not_scaled_away() -> None:
    """Serve is heading to 2 (one still starting); the load asks for 3 but waits out the
    delay: the answer is 2, never the 1 that runs."""
    policy = a.AgentPolicy(target_turns_per_replica=2, upscale_delay_s=5)
    ctx = context(1, {a.TURNS_RUNNING: [6.0]}, target=2)
    assert policy(ctx) == (2, {"up_since": 100.0})


def test_handle_queue_counts_and_max_bounds() -> None:
    replicas, _ = POLICY(context(2, engine(2, 8), queued=200, now=0, state={"up_since": -5}))
    assert replicas == 8  # wants 27, capped at max_replicas


def test_kv_cache_pressure_alone_scales_up() -> None:
    ctx = context(2, engine(2, 1, kv=0.95), state={"up_since": 0})
    assert POLICY(ctx)[0] == 3  # ceil(2 * 0.95 / 0.8)


def test_gpu_memory_pressure_when_enabled() -> None:
    metrics = {**engine(2, 1), a.GPU_MEMORY_USED: [0.97, 0.99]}
    assert POLICY(context(2, metrics, state={"up_since": 0}))[0] == 2  # off by default
    gpu = a.LLMPolicy(gpu_memory_target=0.9, upscale_delay_s=0)
    assert gpu(context(2, metrics))[0] == 3


def test_scales_down_only_with_headroom_and_after_the_delay() -> None:
    # 4 replicas, 12 sequences: 2 replicas would carry them at the target (6 each), at
    # 0.7 headroom 3 are needed (12 / 5.6): the floor is 3.
    replicas, state = POLICY(context(4, engine(4, 3)))
    assert replicas == 4 and state == {"down_since": 100.0}
    assert POLICY(context(4, engine(4, 3), now=110, state=state))[0] == 3
    # A load that came back in between resets the clock.
    assert POLICY(context(4, engine(4, 7), now=105, state=state))[1] == {}


def test_scale_to_zero_and_back() -> None:
    policy = a.LLMPolicy(downscale_delay_s=0)
    assert policy(context(1, engine(1, 0, kv=0), min_replicas=0))[0] == 0
    # No replica, no engine figures: a request waiting in a handle wakes it at once.
    assert policy(context(0, None, requests=1, min_replicas=0))[0] == 1
    assert policy(context(0, None, requests=0, min_replicas=0))[0] == 0


def test_without_engine_figures_serve_counts_are_used() -> None:
    assert POLICY(context(1, None, requests=20, state={"up_since": 0}))[0] == 3


def test_agents_scale_on_running_and_queued_turns() -> None:
    policy = a.AgentPolicy(target_turns_per_replica=10, upscale_delay_s=0)
    metrics = {a.TURNS_RUNNING: [10.0, 10.0], a.TURNS_QUEUED: [5.0, 0.0]}
    assert policy(context(2, metrics))[0] == 3
    assert policy(context(2, metrics, queued=20))[0] == 5  # waiting in handles too
    assert policy(context(2, None, requests=45))[0] == 5  # Serve's count as a fallback


def test_kwargs_are_checked_strictly() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        a.LLMPolicy(target_ongoing_per_replika=8)
    with pytest.raises(ValueError, match="downscale_headroom"):
        a.AgentPolicy(downscale_headroom=1.5)
    assert LLMScaling().upscale_delay_s <= 5 and AgentScaling().upscale_delay_s <= 5


# -- properties ------------------------------------------------------------------------

loads = st.floats(min_value=0, max_value=500, allow_nan=False)
counts = st.integers(min_value=0, max_value=12)


@settings(max_examples=300, deadline=None)
@given(current=st.integers(1, 12), low=loads, extra=loads, kv=st.floats(0, 1))
def test_wanted_replicas_are_monotone_in_load(
    current: int, low: float, extra: float, kv: float
) -> None:
    config = LLMScaling()

    def by_replica(load: float) -> dict[str, dict[int, float]]:
        return {k: dict(enumerate(v)) for k, v in engine(current, load / current, kv).items()}

    less = a.llm_want(current, by_replica(low), 0, 0, config)
    more = a.llm_want(current, by_replica(low + extra), 0, 0, config)
    assert more.up >= less.up and more.floor >= less.floor
    assert less.floor >= less.up  # the down threshold is never above the up one


@settings(max_examples=300, deadline=None)
@given(
    current=counts,
    load=loads,
    lo=st.integers(0, 4),
    span=st.integers(0, 8),
    state_age=st.floats(0, 100),
)
def test_decisions_stay_within_min_and_max(
    current: int, load: float, lo: int, span: int, state_age: float
) -> None:
    hi = lo + span
    policy = a.LLMPolicy(upscale_delay_s=1, downscale_delay_s=1)
    metrics = engine(current, load / max(current, 1)) if current else None
    for state in ({}, {"up_since": 100 - state_age}, {"down_since": 100 - state_age}):
        ctx = context(
            current, metrics, requests=load, min_replicas=lo, max_replicas=hi, state=state
        )
        assert lo <= policy(ctx)[0] <= hi


@settings(max_examples=200, deadline=None)
@given(start=st.integers(1, 12), load=loads)
def test_a_steady_load_settles_without_oscillating(start: int, load: float) -> None:
    """Feed the policy its own decisions under a constant load (spread over the
    replicas it has): the count moves in one direction only, then stays."""
    policy = a.LLMPolicy(upscale_delay_s=2, downscale_delay_s=5)
    current, state, now = start, {}, 0.0
    history = [current]
    for _ in range(60):
        ctx = context(
            current,
            engine(current, load / current, kv=0.1),
            min_replicas=1,
            max_replicas=12,
            now=now,
            state=state,
        )
        current, state = policy(ctx)
        history.append(current)
        now += 1.0
    steps = [b - a_ for a_, b in itertools.pairwise(history) if b != a_]
    assert all(s > 0 for s in steps) or all(s < 0 for s in steps)  # one direction
    assert history[-1] == history[-10]  # settled


DUO_AGENTS = DeploymentID(name="AgentServer", app_name="duo")
DUO_LLM = DeploymentID(name="LLMServer", app_name="duo")
DUO = a.AgentLLMPolicy(
    agents={"target_turns_per_replica": 4, "upscale_delay_s": 1},
    llm={"target_ongoing_per_replica": 8, "upscale_delay_s": 1, "downscale_delay_s": 5},
)


def duo(
    agents: int,
    turns: tuple[float, float],
    llm: int,
    llm_running: float,
    *,
    now: float = 0.0,
    states: dict[DeploymentID, dict[str, Any]] | None = None,
    llm_min: int = 1,
) -> dict[DeploymentID, AutoscalingContext]:
    """Contexts of an agent application with its own LLM: (running, queued) turns."""
    states = states or {}
    running, queued = turns
    return {
        DUO_AGENTS: context(
            agents,
            {
                a.TURNS_RUNNING: [running / agents] * agents,
                a.TURNS_QUEUED: [queued / agents] * agents,
            },
            now=now,
            state=states.get(DUO_AGENTS),
            deployment=DUO_AGENTS,
        ),
        DUO_LLM: context(
            llm,
            engine(llm, llm_running / llm) if llm else None,
            now=now,
            state=states.get(DUO_LLM),
            deployment=DUO_LLM,
            min_replicas=llm_min,
        ),
    }


def test_app_policy_scales_the_llm_ahead_of_the_agents_backlog() -> None:
    """Turns queue in the agents while the engine has one sequence: the LLM scales for
    the sequences those turns will ask for, before they reach it."""
    decisions, states = DUO(duo(1, (4, 12), 1, llm_running=1))
    assert decisions == {DUO_AGENTS: 1, DUO_LLM: 1}  # both wait out upscale_delay_s
    decisions, states = DUO(duo(1, (4, 12), 1, llm_running=1, now=1.0, states=states))
    # 16 turns: 4 agent replicas at 4 each; 16 sequences ahead: 2 LLM replicas at 8 each.
    assert decisions == {DUO_AGENTS: 4, DUO_LLM: 2}
    alone, _ = a.LLMPolicy(**DUO.config.llm.model_dump())(
        duo(1, (4, 12), 1, llm_running=1, now=1.0, states=states)[DUO_LLM]
    )
    assert alone == 1  # by its own queue the LLM would not have moved


def test_app_policy_turn_share_and_the_llms_own_signals() -> None:
    light = a.AgentLLMPolicy(llm_sequences_per_turn=0.25, llm={"upscale_delay_s": 0})
    decisions, _ = light(duo(1, (4, 12), 1, llm_running=1))
    assert decisions[DUO_LLM] == 1  # 16 turns x 0.25 = 4 sequences: one replica
    decisions, _ = light(duo(1, (0, 0), 1, llm_running=30))
    assert decisions[DUO_LLM] == 4  # the engine's own queue still counts


def test_app_policy_keeps_the_llm_while_the_backlog_lasts() -> None:
    states: dict[DeploymentID, dict[str, Any]] = {}
    for now in range(0, 30, 5):  # the engine idles, 12 turns wait: 12 / (8 * 0.7) > 2
        decisions, states = DUO(duo(3, (0, 12), 2, llm_running=0, now=now, states=states))
        assert decisions[DUO_LLM] == 2
    decisions, states = DUO(duo(3, (0, 0), 2, llm_running=0, now=30, states=states))
    decisions, states = DUO(duo(3, (0, 0), 2, llm_running=0, now=35, states=states))
    assert decisions[DUO_LLM] == 1  # backlog gone for downscale_delay_s


def test_app_policy_wakes_a_scaled_to_zero_llm_at_once() -> None:
    decisions, _ = DUO(duo(1, (1, 0), 0, llm_running=0, llm_min=0))
    assert decisions[DUO_LLM] == 1


@settings(max_examples=300, deadline=None)
@given(turns=loads, llm=st.integers(1, 8), running=loads, kv=st.floats(0, 1))
def test_app_policy_never_gives_the_llm_less_than_its_own_signals(
    turns: float, llm: int, running: float, kv: float
) -> None:
    ctx = duo(2, (turns, 0), llm, llm_running=running, now=10.0)
    ctx[DUO_LLM] = context(llm, engine(llm, running / llm, kv=kv), now=10.0, deployment=DUO_LLM)
    policy = a.AgentLLMPolicy(llm={"upscale_delay_s": 0, "downscale_delay_s": 0})
    alone = a.LLMPolicy(upscale_delay_s=0, downscale_delay_s=0)(ctx[DUO_LLM])[0]
    assert policy(ctx)[0][DUO_LLM] >= alone


def test_serve_config_check_of_the_policies() -> None:
    import yaml

    from runtime.config import ConfigError, check_serve_config
    from tests.support.paths import SERVE_CONFIGS

    config = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    agents = next(x for x in config["applications"] if x["name"] == "agents")
    scaling = agents["deployments"][0]["autoscaling_config"]
    check_serve_config(config, "local.yaml")
    scaling["policy"]["policy_kwargs"]["target_turns_per_replicas"] = 3
    del scaling["upscale_delay_s"]
    with pytest.raises(ConfigError) as err:
        check_serve_config(config, "local.yaml")
    assert "target_turns_per_replicas" in str(err.value)
    assert "upscale_delay_s: set it to 0" in str(err.value)


def _duo_config() -> dict[str, Any]:
    """local.yaml plus the test cluster's `duo` application (agents with their own LLM)."""
    import yaml

    from tests.support.paths import SERVE_CONFIGS
    from tests.support.stack import agent_apps

    config = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    duo_app = next(x for x in agent_apps(Path("/tmp"), "") if x["name"] == "duo")
    config["applications"].append(copy.deepcopy(duo_app))  # its dicts are shared
    return config


def _duo(config: dict[str, Any]) -> dict[str, Any]:
    return next(x for x in config["applications"] if x["name"] == "duo")


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["args"].pop("llm_server"),
            "AgentLLMPolicy scales an agent application with its own LLM",
        ),
        (
            lambda d: d["deployments"].pop(1),
            "needs an `autoscaling_config` (min_replicas, max_replicas, delays 0) for LLMServer",
        ),
        (
            lambda d: d["deployments"][1]["autoscaling_config"].update(downscale_delay_s=600),
            "applications[3].deployments[1].autoscaling_config.downscale_delay_s: set it to 0",
        ),
        (
            lambda d: d["autoscaling_policy"]["policy_kwargs"]["agents"].update(target=3),
            "applications[3].autoscaling_policy.policy_kwargs.agents.target",
        ),
        (
            lambda d: d["autoscaling_policy"].update(
                policy_function="runtime.autoscaling:LLMPolicy"
            ),
            "is a deployment's policy",
        ),
        (
            lambda d: d["deployments"][0]["autoscaling_config"].update(
                policy={"policy_function": "runtime.autoscaling:AgentLLMPolicy"}
            ),
            "is an application-level policy",
        ),
        (
            lambda d: d["deployments"][1].update(ray_actor_options={"num_cpus": 1}),
            "applications[3].deployments[1].ray_actor_options: an LLM deployment's placement",
        ),
    ],
)
def test_serve_config_check_of_the_application_policy(edit: Any, expected: str) -> None:
    from runtime.config import ConfigError, check_serve_config

    config = _duo_config()
    check_serve_config(config, "duo")
    edit(_duo(config))
    with pytest.raises(ConfigError) as err:
        check_serve_config(config, "duo")
    assert expected in str(err.value)


def test_gateways_and_agents_reach_an_applications_own_llm() -> None:
    from runtime.config import ConfigError, check_serve_config

    config = _duo_config()
    gateway = next(x for x in config["applications"] if x["name"] == "gateway")
    gateway["args"]["models"].append({"name": "duo-tiny", "app": "duo", "deployment": "LLMServer"})
    _duo(config)["args"]["agents"].append(
        {
            "name": "direct",
            "factory": "runtime.agents.examples:planner",
            "llm": {"app": "duo", "model": "duo-tiny"},
        }
    )
    check_serve_config(config, "duo")
    gateway["args"]["models"][-1]["deployment"] = "AgentServer"
    with pytest.raises(ConfigError) as err:
        check_serve_config(config, "duo")
    assert "application 'duo' has no LLM deployment 'AgentServer'" in str(err.value)
