"""Agent application config: strict validation with errors that say how to fix them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from runtime.config import ConfigError, check_serve_config
from runtime.config.agents import AgentAppConfig, ScriptedLLM, ServeLLM
from tests.support.paths import SERVE_CONFIGS
from tests.support.stack import scripted_agent


def _args(**agent: Any) -> dict[str, Any]:
    base = {"name": "a", "factory": "m:f", "llm": {"model": "x"}}
    return {"agents": [{**base, **agent}]}


def test_defaults() -> None:
    config = AgentAppConfig.model_validate(_args())
    agent = config.agents[0]
    assert isinstance(agent.llm, ServeLLM) and agent.llm.app == "llm"
    assert agent.busy == "reject" and agent.budgets.max_steps == 16
    assert config.sessions.store.kind == "sqlite"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (_args(name="Bad Name"), "String should match pattern"),
        (_args(factory="not-a-path"), "String should match pattern"),
        (_args(tools=["runtime.agents.tools"]), "not a `module:attribute`"),
        (_args(tools=["m:t", "m:t"]), "listed twice"),
        (_args(llm={"kind": "nope"}), "does not match any of the expected tags"),
        (_args(llm={"model": "x", "temprature": 1}), "Extra inputs are not permitted"),
        (_args(llm={"kind": "scripted", "rules": [{"steps": [{}]}]}), "exactly one of"),
        (_args(busy="drop"), "'reject', 'queue' or 'interrupt'"),
        (_args(budgets={"max_steps": 0}), "greater than or equal to 1"),
        ({"agents": []}, "at least 1 item"),
        ({"agents": _args()["agents"] * 2}, "repeated: a"),
        ({**_args(), "sessions": {"lease_ttl_s": 1, "poll_interval_s": 1}}, "at most a third"),
        ({**_args(), "sessions": {"store": {"kind": "postgres"}}}, "exactly one of"),
    ],
)
def test_rejects(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AgentAppConfig.model_validate(args)


def test_scripted_kind() -> None:
    config = AgentAppConfig.model_validate(
        _args(llm={"kind": "scripted", "rules": [{"steps": [{"answer": "hi"}]}]})
    )
    assert isinstance(config.agents[0].llm, ScriptedLLM)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://app:s3cret-pw@db:5432/runtime",
        "host=db password=s3cret-pw",
        "postgresql://app@db/runtime?sslmode=require&password=s3cret-pw",
        "postgresql://db/runtime?PASSWORD=s3cret-pw",
    ],
)
def test_dsn_with_password_is_refused_without_echoing_it(dsn: str) -> None:
    config = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    agents = next(a for a in config["applications"] if a["name"] == "agents")
    bad = copy.deepcopy(config)
    bad_agents = next(a for a in bad["applications"] if a["name"] == "agents")
    bad_agents["args"]["sessions"]["store"] = {"kind": "postgres", "dsn": dsn}
    with pytest.raises(ConfigError) as err:
        check_serve_config(bad, "bad.yaml")
    assert "dsn_env" in str(err.value) and "s3cret-pw" not in str(err.value)
    assert agents["args"]["sessions"]["store"]["kind"] == "sqlite"


def test_unknown_agent_key_is_named_with_a_suggestion() -> None:
    config = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    agents = next(a for a in config["applications"] if a["name"] == "agents")
    agents["args"]["agents"][0]["system_promt"] = "typo"
    with pytest.raises(ConfigError, match=r"agents\[0\]\.system_promt"):
        check_serve_config(config, "typo.yaml")


def test_the_shipped_agent_apps_survive_the_builders_dump() -> None:
    """Builders pass their replicas ``model_dump(mode="json")``: it must validate again."""
    for name in ("local.yaml", "gpu.yaml"):
        config = yaml.safe_load((SERVE_CONFIGS / name).read_text())
        for app in config["applications"]:
            if app["import_path"] == "runtime.apps:build_agent_app":
                parsed = AgentAppConfig.model_validate(app["args"])
                again = AgentAppConfig.model_validate(parsed.model_dump(mode="json"))
                assert again == parsed


def test_an_agent_that_names_the_gateway_is_told_about_the_router() -> None:
    with pytest.raises(ValueError, match=r"`gateway` is gone.*`router:`"):
        AgentAppConfig.model_validate(_args(llm={"gateway": "gateway", "model": "m"}))


def test_agent_replicas_drain_for_the_sessions_window() -> None:
    """Serve lets a stopping AgentServer's turns finish for `sessions.drain_s`."""
    from runtime.apps import build_agent_app

    agent = scripted_agent("a")
    default = build_agent_app({"agents": [agent]})
    chosen = build_agent_app({"agents": [agent], "sessions": {"drain_s": 45}})
    assert default._bound_deployment._deployment_config.graceful_shutdown_timeout_s == 60
    assert chosen._bound_deployment._deployment_config.graceful_shutdown_timeout_s == 45


def test_agent_and_gateway_replicas_select_cpu_workers_unless_placed_anywhere() -> None:
    """`placement: any` (local.yaml, one plain Ray node as `serve run` starts it) drops
    the label; the default keeps agents and gateways on CPU workers."""
    from runtime.apps import build_agent_app, build_gateway_app

    def selector(app: Any) -> object:
        return app._bound_deployment.ray_actor_options.get("label_selector")

    agents = {"agents": [scripted_agent("a")]}
    assert selector(build_agent_app(agents)) == {"worker-kind": "cpu"}
    assert selector(build_agent_app({**agents, "placement": "any"})) is None
    assert selector(build_gateway_app({})) == {"worker-kind": "cpu"}
    assert selector(build_gateway_app({"placement": "any"})) is None
