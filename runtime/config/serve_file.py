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

from runtime.config.agents import AgentAppConfig
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
    for i, app in enumerate(data.get("applications") or []):
        if not isinstance(app, dict):
            continue
        model = APP_ARGS_MODELS.get(str(app.get("import_path", "")))
        if model is None:
            continue
        name = app.get("name", i)
        try:
            model.model_validate(app.get("args") or {})
        except ValidationError as err:
            problems += [
                f"{p} (application '{name}')"
                for p in validation_problems(err, model, ("applications", i, "args"))
            ]
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
