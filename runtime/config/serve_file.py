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

from runtime import names
from runtime.config.agents import AgentAppConfig, ServeLLM
from runtime.config.autoscaling import AgentLLMScaling, AgentScaling, LLMScaling
from runtime.config.errors import ConfigError, unknown_keys, validation_problems
from runtime.config.gateway import GatewayAppConfig
from runtime.config.llm import LLMAppConfig
from runtime.config.placement import CPU_WORKER, WORKER_KIND
from runtime.config.router import RouterConfig

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
    problems += _placement(data)
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
            problems.append(f"{where}: application '{app}' is not built by {_builder(kind)}")
        return target

    def expect_llm(app: str, deployment: str, where: str) -> None:
        """An LLM application, or an agent application with its own ``llm_server``."""
        target = apps.get(app)
        own = isinstance(target, AgentAppConfig) and target.llm_server is not None
        if not own and not isinstance(expect(app, LLMAppConfig, where), LLMAppConfig):
            return  # reported by expect()
        if deployment != names.LLM_DEPLOYMENT:
            problems.append(
                f"{where}: application '{app}' has no LLM deployment "
                f"'{deployment}' (it is `LLMServer`)"
            )

    def check_router(name: str, router: RouterConfig) -> None:
        for m in router.models:
            if m.app is None:
                continue
            expect_llm(m.app, m.deployment, f"application '{name}': model '{m.name}'")
            target = apps.get(m.app)
            llm = target.llm_server if isinstance(target, AgentAppConfig) else target
            if m.price and isinstance(llm, LLMAppConfig) and llm.price:
                problems.append(
                    f"application '{name}': model '{m.name}' has a per-token `price` "
                    f"and its application '{m.app}' a per-GPU-second one: its cost "
                    "would be counted twice; keep one"
                )

    for name, config in apps.items():
        if isinstance(config, GatewayAppConfig):
            check_router(name, config)
            for agent_app in config.agent_apps:
                expect(agent_app, AgentAppConfig, f"application '{name}': agent_apps")
        elif isinstance(config, AgentAppConfig):
            if config.router is not None:
                check_router(name, config.router)
                continue  # the agents' models are checked against it (AgentAppConfig)
            for agent in config.agents:
                if isinstance(agent.llm, ServeLLM):
                    route = agent.llm.route()
                    assert route.app is not None
                    expect_llm(
                        route.app, route.deployment, f"application '{name}': agent '{agent.name}'"
                    )
    return problems


def _builder(kind: type[BaseModel]) -> str:
    return next(path for path, model in APP_ARGS_MODELS.items() if model is kind)


#: The runtime's autoscaling policies -> the model of their ``policy_kwargs``.
POLICY_KWARGS_MODELS: dict[str, type[BaseModel]] = {
    "runtime.autoscaling:LLMPolicy": LLMScaling,
    "runtime.autoscaling:AgentPolicy": AgentScaling,
}
#: Application-level ones (an application's ``autoscaling_policy``).
APP_POLICY_KWARGS_MODELS: dict[str, type[BaseModel]] = {
    "runtime.autoscaling:AgentLLMPolicy": AgentLLMScaling,
}


def _serve_delays(scaling: dict[str, Any], where: str, policy: str) -> list[str]:
    """Serve wraps a custom policy in its own delays: they must be 0 under ours."""
    return [
        f"{where}.autoscaling_config.{knob}: set it to 0 with {policy}: Serve would delay "
        "the policy's decisions by its own timers (30 s and 600 s by default); the "
        f"policy's `policy_kwargs` `{knob}` applies instead"
        for knob in ("upscale_delay_s", "downscale_delay_s")
        if scaling.get(knob) != 0
    ]


def _policy_kwargs(data: dict[str, Any]) -> list[str]:
    """Ray keeps ``policy_kwargs`` as an opaque dict: check the runtime's own strictly."""
    problems: list[str] = []
    for i, app in enumerate(data.get("applications") or []):
        if not isinstance(app, dict):
            continue
        app_policy = app.get("autoscaling_policy") or {}
        app_function = str(app_policy.get("policy_function", ""))
        for j, deployment in enumerate(app.get("deployments") or []):
            policy = ((deployment or {}).get("autoscaling_config") or {}).get("policy") or {}
            function = str(policy.get("policy_function", ""))
            where = f"applications[{i}].deployments[{j}]"
            if function in APP_POLICY_KWARGS_MODELS:
                problems.append(
                    f"{where}.autoscaling_config.policy: {function} is an "
                    "application-level policy: set it as the application's "
                    "`autoscaling_policy`"
                )
            model = POLICY_KWARGS_MODELS.get(function)
            if model is None:
                continue
            problems += _serve_delays(deployment["autoscaling_config"], where, function)
            try:
                model.model_validate(policy.get("policy_kwargs") or {})
            except ValidationError as err:
                problems += validation_problems(
                    err,
                    model,
                    (
                        "applications",
                        i,
                        "deployments",
                        j,
                        "autoscaling_config",
                        "policy",
                        "policy_kwargs",
                    ),
                )
        if app_function in POLICY_KWARGS_MODELS:
            problems.append(
                f"applications[{i}].autoscaling_policy: {app_function} is a "
                "deployment's policy: set it in that deployment's "
                "`autoscaling_config.policy`"
            )
        if app_function in APP_POLICY_KWARGS_MODELS:
            problems += _app_policy(i, app, app_function)
    return problems


def _app_policy(i: int, app: dict[str, Any], function: str) -> list[str]:
    """``AgentLLMPolicy``: an agent application with its own LLM, both autoscaled."""
    model = APP_POLICY_KWARGS_MODELS[function]
    where = f"applications[{i}]"
    problems: list[str] = []
    try:
        model.model_validate(app["autoscaling_policy"].get("policy_kwargs") or {})
    except ValidationError as err:
        problems += validation_problems(
            err, model, ("applications", i, "autoscaling_policy", "policy_kwargs")
        )
    if app.get("import_path") != _builder(AgentAppConfig) or not (app.get("args") or {}).get(
        "llm_server"
    ):
        problems.append(
            f"{where}.autoscaling_policy: {function} scales an agent "
            f"application with its own LLM: {_builder(AgentAppConfig)} with "
            "`args.llm_server`"
        )
    deployments = {
        str((d or {}).get("name")): (j, d or {}) for j, d in enumerate(app.get("deployments") or [])
    }
    for name in (names.AGENT_DEPLOYMENT, names.LLM_DEPLOYMENT):
        if name not in deployments or not deployments[name][1].get("autoscaling_config"):
            problems.append(
                f"{where}.deployments: {function} needs an `autoscaling_config` "
                f"(min_replicas, max_replicas, delays 0) for {name}"
            )
            continue
        j, deployment = deployments[name]
        problems += _serve_delays(
            deployment["autoscaling_config"], f"{where}.deployments[{j}]", function
        )
    return problems


def _cpu_label(actor: dict[str, Any], placement: object, where: str) -> list[str]:
    """An agent or gateway deployment's ``ray_actor_options`` replace the builder's: they
    must select what the app's ``args.placement`` says (the label, or none)."""
    label = (actor.get("label_selector") or {}).get(WORKER_KIND)
    if placement == "any":
        if label is None:
            return []
        return [
            f"{where}.ray_actor_options.label_selector: `{WORKER_KIND}: {label}` with the "
            "application's `args.placement: any`; remove the label, or set "
            "`placement: cpu-worker` (CPU workers only)"
        ]
    if label == CPU_WORKER[WORKER_KIND]:
        return []
    return [
        f"{where}.ray_actor_options.label_selector: must hold "
        f"`{WORKER_KIND}: {CPU_WORKER[WORKER_KIND]}` (the application's `args.placement` "
        "is cpu-worker, the default: its replicas run on CPU workers only; these options "
        "replace the builder's, which carry that label). On one plain Ray node, set "
        "`placement: any` and no label."
    ]


_PLACEMENT_KEYS = (
    "ray_actor_options",
    "placement_group_bundles",
    "placement_group_strategy",
    "placement_group_bundle_label_selector",
)


def _placement(data: dict[str, Any]) -> list[str]:
    """Serve replaces a builder's actor options with the config's: keep the placement.

    An LLM deployment's options come from its ``args`` (the engine's environment, the
    GPUs, the node label); an agent or gateway deployment that sets ``ray_actor_options``
    must keep the CPU workers' label in them.
    """
    problems: list[str] = []
    for i, app in enumerate(data.get("applications") or []):
        if not isinstance(app, dict):
            continue
        builder = str(app.get("import_path", ""))
        if builder not in APP_ARGS_MODELS:
            continue
        for j, deployment in enumerate(app.get("deployments") or []):
            if not isinstance(deployment, dict):
                continue
            where = f"applications[{i}].deployments[{j}]"
            if (
                APP_ARGS_MODELS[builder] is LLMAppConfig
                or deployment.get("name") == names.LLM_DEPLOYMENT
            ):
                problems += [
                    f"{where}.{key}: an LLM deployment's placement and resources come from "
                    "its `args` (`placement`, `num_cpus`, `accelerator`, "
                    "`engine.tensor_parallel_size`); Serve would replace the engine's "
                    "environment and GPUs the builder sets with these. Remove it."
                    for key in _PLACEMENT_KEYS
                    if key in deployment
                ]
                continue
            actor = deployment.get("ray_actor_options")
            if not isinstance(actor, dict):
                continue
            args = app.get("args")
            placement = args.get("placement", "cpu-worker") if isinstance(args, dict) else None
            problems += _cpu_label(actor, placement, where)
    return problems
