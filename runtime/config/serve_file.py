"""Strict checks of Ray Serve config files.

Ray's ``ServeDeploySchema`` ignores keys it does not know, so a typo such as
``num_replica`` deploys silently with the default. This module rejects unknown
keys in Ray's own sections and validates the ``args`` of every application
built by this project against its pydantic model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from runtime.config.agents import AgentAppConfig, ServeLLM
from runtime.config.autoscaling import AgentScaling, LLMScaling
from runtime.config.errors import ConfigError, unknown_keys, validation_problems
from runtime.config.gateway import GatewayAppConfig
from runtime.config.llm import LLMAppConfig

#: import_path of each builder of this project -> the model of its ``args``.
APP_ARGS_MODELS: dict[str, type[BaseModel]] = {
    "runtime.apps:build_llm_app": LLMAppConfig,
    "runtime.apps:build_agent_app": AgentAppConfig,
    "runtime.apps:build_gateway_app": GatewayAppConfig,
}


def check_serve_config(data: Any, source: str = "<serve config>") -> Any:
    """Validate a parsed serve config; return Ray's ``ServeDeploySchema`` of it.

    Raises:
        ConfigError: naming ``source``, each bad key's path and how to fix it.
    """
    from ray.serve.schema import ServeDeploySchema

    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must hold a mapping with an `applications` list"])
    problems = unknown_keys(data, ServeDeploySchema)
    schema = None
    try:
        schema = ServeDeploySchema.model_validate(data)
    except ValidationError as err:
        problems += validation_problems(err, ServeDeploySchema)
    checked: dict[str, BaseModel] = {}
    for i, app in enumerate(data.get("applications") or []):
        if not isinstance(app, dict):
            continue
        model = APP_ARGS_MODELS.get(str(app.get("import_path", "")))
        if model is None:
            continue
        name = app.get("name", i)
        try:
            checked[str(name)] = model.model_validate(app.get("args") or {})
        except ValidationError as err:
            problems += [
                f"{p} (application '{name}')"
                for p in validation_problems(err, model, ("applications", i, "args"))
            ]
    problems += _policy_kwargs(data)
    if not problems:
        problems += _references(checked)
    if problems:
        raise ConfigError(source, problems)
    return schema


def load_serve_config(path: str | Path) -> Any:
    """Read and strictly check a serve config file; return its ``ServeDeploySchema``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), [f"not valid YAML: {err}"]) from None
    return check_serve_config(data, str(path))


def validate_args(model: type[BaseModel], args: dict[str, Any], source: str) -> Any:
    """Validate one application's ``args`` (used by the builders at deploy time)."""
    try:
        return model.model_validate(args)
    except ValidationError as err:
        raise ConfigError(source, validation_problems(err, model, ("args",))) from None


def _references(apps: dict[str, BaseModel]) -> list[str]:
    """Names one application gives another: they must exist and be of the right kind."""
    problems: list[str] = []

    def expect(app: str, kind: type[BaseModel], where: str) -> BaseModel | None:
        target = apps.get(app)
        if target is None:
            problems.append(f"{where}: no application named '{app}' in this file")
        elif not isinstance(target, kind):
            problems.append(f"{where}: application '{app}' is not built by "
                            f"{_builder(kind)}")  # fmt: skip
        return target

    for name, config in apps.items():
        if isinstance(config, GatewayAppConfig):
            for m in config.models:
                if m.app is not None:
                    expect(m.app, LLMAppConfig, f"application '{name}': model '{m.name}'")
            for agent_app in config.agent_apps:
                expect(agent_app, AgentAppConfig, f"application '{name}': agent_apps")
        elif isinstance(config, AgentAppConfig):
            for agent in config.agents:
                llm = agent.llm
                where = f"application '{name}': agent '{agent.name}'"
                if not isinstance(llm, ServeLLM):
                    continue
                if llm.gateway is None:
                    expect(llm.app, LLMAppConfig, where)
                    continue
                gateway = expect(llm.gateway, GatewayAppConfig, where)
                if isinstance(gateway, GatewayAppConfig) and llm.model not in {
                    m.name for m in gateway.models
                }:
                    problems.append(f"{where}: the gateway '{llm.gateway}' has no model "
                                    f"'{llm.model}'")  # fmt: skip
    return problems


def _builder(kind: type[BaseModel]) -> str:
    return next(path for path, model in APP_ARGS_MODELS.items() if model is kind)


#: The runtime's autoscaling policies -> the model of their ``policy_kwargs``.
POLICY_KWARGS_MODELS: dict[str, type[BaseModel]] = {
    "runtime.autoscaling:LLMPolicy": LLMScaling,
    "runtime.autoscaling:AgentPolicy": AgentScaling,
}


def _policy_kwargs(data: dict[str, Any]) -> list[str]:
    """Ray keeps ``policy_kwargs`` as an opaque dict: check the runtime's own strictly."""
    problems: list[str] = []
    for i, app in enumerate(data.get("applications") or []):
        if not isinstance(app, dict):
            continue
        for j, deployment in enumerate(app.get("deployments") or []):
            policy = ((deployment or {}).get("autoscaling_config") or {}).get("policy") or {}
            model = POLICY_KWARGS_MODELS.get(str(policy.get("policy_function", "")))
            if model is None:
                continue
            where = ("applications", i, "deployments", j, "autoscaling_config", "policy",
                     "policy_kwargs")  # fmt: skip
            scaling = deployment["autoscaling_config"]
            for knob in ("upscale_delay_s", "downscale_delay_s"):
                if scaling.get(knob) != 0:
                    problems.append(
                        f"applications[{i}].deployments[{j}].autoscaling_config.{knob}: set "
                        f"it to 0 with {policy['policy_function']}: Serve would delay the "
                        "policy's decisions by its own timers (30 s and 600 s by default); "
                        f"the policy's `policy_kwargs.{knob}` applies instead"
                    )
            try:
                model.model_validate(policy.get("policy_kwargs") or {})
            except ValidationError as err:
                problems += validation_problems(err, model, where)
    return problems
