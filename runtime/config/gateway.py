"""Config of the gateway: the ``args`` of ``runtime.apps:build_gateway_app``."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runtime.config.llm import StrictModel
from runtime.config.providers import ProviderConfig, RateLimit
from runtime.config.telemetry import SCENARIO, TelemetryConfig, TokenPrice

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


_ASYMMETRIC = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]


class JwtConfig(StrictModel):
    """Bearer JWTs from an identity provider, checked against its public keys (JWKS).

    Required claims: ``iss`` (= ``issuer``), ``aud`` (contains ``audience``), ``exp``,
    ``sub`` and the tenant claim. Scopes come from the ``scope`` claim (space-separated
    ``model:<name>``, ``agent:<name>``, ``admin``; ``*`` as a name allows all) or, when a
    token has none, from ``default_scopes``. Only asymmetric algorithms are accepted, so
    the gateway holds no signing secret.
    """

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: str | None = Field(default=None, description="A JWKS JSON file (a mounted Secret).")
    jwks_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    jwks_cache_s: float = Field(
        default=300.0, gt=0, le=86400, description="How long keys from jwks_url are kept."
    )
    algorithms: list[_ASYMMETRIC] = Field(default=["RS256", "ES256"], min_length=1)
    tenant_claim: str = Field(default="tenant", min_length=1)
    leeway_s: float = Field(default=30.0, ge=0, le=600, description="Clock skew allowed.")
    default_scopes: Scopes = Field(default_factory=Scopes)

    @model_validator(mode="after")
    def _one_source(self) -> JwtConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("set exactly one of `jwks_file` or `jwks_url`")
        return self


class AuthConfig(StrictModel):
    keys: list[ApiKey] = Field(default_factory=list)
    jwt: JwtConfig | None = Field(default=None, description="Also accept JWT bearer tokens.")
    local_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable with one more key (local mode: RUNTIME_API_KEY, "
        "which `python -m runtime run` sets or generates); it gets every scope.",
    )
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
    """A model clients may name: an LLM deployment of this cluster (``app``, the
    default ``llm``) or an external provider (``provider``), with fallbacks."""

    name: str = Field(min_length=1, description="The `model` clients send (`served_name`).")
    app: str | None = Field(default=None, min_length=1, description="Self-hosted: the LLM app.")
    deployment: str = Field(default="LLMServer", min_length=1)
    provider: str | None = Field(default=None, description="External: a name from `providers`.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Other models tried in order when this one is unavailable: no ready "
        "replica, saturated (Serve back-pressure), down, or a provider failing or over its "
        "rate limit. The reply then names the model that answered.",
    )
    price: TokenPrice | None = Field(
        default=None,
        description="Per-token price: each answer's cost is counted per tenant, agent, "
        "scenario and model (`runtime_cost_usd_total`). A self-hosted model may instead "
        "be priced per GPU-second in its LLM application (`price`), not both.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_app(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("provider") is None and data.get("app") is None:
            return {**data, "app": "llm"}
        return data

    @model_validator(mode="after")
    def _target(self) -> ModelRoute:
        if self.provider is not None and self.app is not None:
            raise ValueError(f"model {self.name!r}: set `app` or `provider`, not both")
        if self.name in self.fallback:
            raise ValueError(f"model {self.name!r} lists itself as a fallback")
        if len(set(self.fallback)) != len(self.fallback):
            raise ValueError(f"model {self.name!r}: a fallback is listed twice")
        return self


class TenantLimit(RateLimit):
    concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Requests of one tenant in flight at once, per gateway replica "
        "(429 beyond). Streams count until they end.",
    )


class RateLimitConfig(StrictModel):
    """Requests and LLM tokens per minute, per tenant and per key (429 + Retry-After).

    Counters live in this replica's memory, or in Redis (shared by every gateway
    replica) when ``storage_url_env`` names an environment variable holding a
    ``redis://`` URL. Tokens are prompt plus completion, charged when a reply ends; a
    request is refused once the minute's tokens are spent.
    """

    storage_url_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")
    per_tenant: TenantLimit = Field(default_factory=TenantLimit)
    per_key: RateLimit = Field(default_factory=RateLimit)
    tenants: dict[str, TenantLimit] = Field(
        default_factory=dict, description="Per-tenant overrides of `per_tenant` (whole)."
    )
    keys: dict[str, RateLimit] = Field(
        default_factory=dict, description="Per-key overrides of `per_key`, by key id."
    )
    fail_open: bool = Field(
        default=True,
        description="When the storage cannot be reached: let requests through (logged) "
        "rather than refuse them all.",
    )

    def tenant(self, name: str) -> TenantLimit:
        return self.tenants.get(name, self.per_tenant)

    def key(self, key_id: str) -> RateLimit:
        return self.keys.get(key_id, self.per_key)


class GatewayAppConfig(StrictModel):
    """The front door: authentication, tenants, and routes to models and agents."""

    models: list[ModelRoute] = Field(default_factory=list)
    agent_apps: list[str] = Field(
        default_factory=list, description="Applications built by build_agent_app."
    )
    providers: list[ProviderConfig] = Field(default_factory=list)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    ready_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the router refreshes which self-hosted models have a "
        "running replica (a model with none falls back at once).",
    )
    scenarios: list[str] = Field(
        default_factory=list,
        description="Scenario names an LLM request may give in its `X-Scenario` header "
        "(a cost label; any other name is refused with 400). Requests without one count "
        "as `direct`; agent turns count under their agent's `scenario`.",
    )
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @field_validator("scenarios")
    @classmethod
    def _scenario_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(SCENARIO, name):
                raise ValueError(f"scenario {name!r} must match {SCENARIO}")
        if len(set(names)) != len(names):
            raise ValueError("scenario names must be unique")
        return names

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelRoute]) -> list[ModelRoute]:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return models

    @model_validator(mode="after")
    def _references(self) -> GatewayAppConfig:
        providers = [p.name for p in self.providers]
        if len(set(providers)) != len(providers):
            raise ValueError("provider names must be unique")
        names = {m.name for m in self.models}
        for m in self.models:
            if m.provider is not None and m.provider not in providers:
                raise ValueError(f"model {m.name!r}: no provider named {m.provider!r}")
            for other in m.fallback:
                if other not in names:
                    raise ValueError(f"model {m.name!r}: fallback {other!r} is not a model")
        return self
