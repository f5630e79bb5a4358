"""Config of the gateway: the ``args`` of ``runtime.apps:build_gateway_app``."""

from __future__ import annotations

from pydantic import Field, field_validator

from runtime.config.llm import StrictModel

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"


class Scopes(StrictModel):
    """What a key may call. `*` allows every model or agent."""

    models: list[str] = Field(default_factory=lambda: ["*"])
    agents: list[str] = Field(default_factory=lambda: ["*"])
    admin: bool = False

    def allows_model(self, name: str) -> bool:
        return "*" in self.models or name in self.models

    def allows_agent(self, name: str) -> bool:
        return "*" in self.agents or name in self.agents


class ApiKey(StrictModel):
    """An API key of a tenant, stored as the SHA-256 of the key (never the key itself).

    Keys are random tokens of 256 bits (`python -m runtime keys new`), so a plain hash is
    enough: there is nothing to guess.
    """

    id: str = Field(pattern=_NAME, description="Names the key in logs and metrics.")
    tenant: str = Field(pattern=_NAME)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the key.")
    scopes: Scopes = Field(default_factory=Scopes)
    revoked: bool = False


class AuthConfig(StrictModel):
    keys: list[ApiKey] = Field(default_factory=list)
    local_key_env: str | None = Field(
        default=None, pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable with one more key (local mode: RUNTIME_API_KEY, "
        "which `python -m runtime run` sets or generates); it gets every scope.",
    )  # fmt: skip
    local_tenant: str = Field(default="local", pattern=_NAME)

    @field_validator("keys")
    @classmethod
    def _unique(cls, keys: list[ApiKey]) -> list[ApiKey]:
        ids = [k.id for k in keys]
        hashes = [k.sha256 for k in keys]
        if len(set(ids)) != len(ids):
            raise ValueError("key ids must be unique")
        if len(set(hashes)) != len(hashes):
            raise ValueError("the same key (sha256) is listed twice")
        return keys


class ModelRoute(StrictModel):
    """A model clients may name, served by an LLM deployment of this cluster."""

    name: str = Field(min_length=1, description="The `model` clients send (`served_name`).")
    app: str = Field(default="llm", min_length=1)
    deployment: str = Field(default="LLMServer", min_length=1)


class GatewayAppConfig(StrictModel):
    """The front door: authentication, tenants, and routes to models and agents."""

    models: list[ModelRoute] = Field(default_factory=list)
    agent_apps: list[str] = Field(
        default_factory=list, description="Applications built by build_agent_app."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelRoute]) -> list[ModelRoute]:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return models
