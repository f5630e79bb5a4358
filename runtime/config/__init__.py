"""Strict, typed config: one pydantic model per concern, unknown keys rejected."""

from runtime.config.errors import ConfigError
from runtime.config.llm import (
    EngineConfig,
    HubSource,
    LLMAppConfig,
    LocalFolderSource,
    ModelSource,
    SmolLM2Source,
    TinyRandomSource,
)
from runtime.config.serve_file import APP_ARGS_MODELS, check_serve_config, load_serve_config

__all__ = [
    "APP_ARGS_MODELS",
    "ConfigError",
    "EngineConfig",
    "HubSource",
    "LLMAppConfig",
    "LocalFolderSource",
    "ModelSource",
    "SmolLM2Source",
    "TinyRandomSource",
    "check_serve_config",
    "load_serve_config",
]
