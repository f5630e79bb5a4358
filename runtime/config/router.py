"""Config of the LLM router: the model table, providers and shared limits.

The gateway's args hold these fields at their top level; an agent application's
``router`` holds the same fields, so that its replicas route their agents' LLM calls
themselves, with the same table and limits (in a serve file, one YAML anchor on the
gateway's values and an alias in the agents' ``router`` keep them one; see
``serve_configs/gpu.yaml``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runtime import names
from runtime.config.base import StrictModel
from runtime.config.providers import ProviderConfig, RateLimit
from runtime.config.telemetry import TokenPrice


class RequestLimits(StrictModel):
    """What one request to a model may ask for (400 beyond): a key holder's request
    must not cost the cluster more than these, whatever its body says."""

    max_tokens: int = Field(
        default=4096,
        ge=1,
        description="The most `max_tokens` (or `max_completion_tokens`) a request may ask.",
    )
    default_max_tokens: int = Field(
        default=512,
        ge=1,
        description="`max_tokens` of a request that names none (an engine would generate "
        "to the end of its context).",
    )
    max_n: int = Field(default=4, ge=1, description="The most choices (`n`) per request.")
    max_prompts: int = Field(
        default=16, ge=1, description="Completions: the most prompts in one request."
    )
    max_messages: int = Field(
        default=512, ge=1, description="Chat: the most messages in one request."
    )

    @model_validator(mode="after")
    def _default_within(self) -> RequestLimits:
        if self.default_max_tokens > self.max_tokens:
            raise ValueError("default_max_tokens must not exceed max_tokens")
        return self


class ModelRoute(StrictModel):
    """A model clients may name: an LLM deployment of this cluster (``app``, the
    default ``llm``) or an external provider (``provider``), with fallbacks."""

    name: str = Field(min_length=1, description="The `model` clients send (`served_name`).")
    app: str | None = Field(default=None, min_length=1, description="Self-hosted: the LLM app.")
    deployment: str = Field(default=names.LLM_DEPLOYMENT, min_length=1)
    provider: str | None = Field(default=None, description="External: a name from `providers`.")
    fallback: list[str] = Field(
        default_factory=list,
        description="Other models tried in order when this one is unavailable: no ready "
        "replica, saturated (Serve back-pressure), down, or a provider failing or over its "
        "rate limit. The reply then names the model that answered.",
    )
    timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=3600,
        description="Self-hosted: the most a call waits for its answer (a stream: for each "
        "chunk); beyond, the call is cancelled on the replica and answered 504.",
    )
    limits: RequestLimits = Field(
        default_factory=RequestLimits,
        description="What one request may ask of this model. Its `n x max_tokens` (times "
        "its prompts) is charged to the token limits before it runs, and the rest of "
        "its usage when it ends.",
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
            return {**data, "app": names.LLM_APP}
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
    on_storage_failure: Literal["memory", "refuse", "allow"] = Field(
        default="memory",
        description="When the shared storage (Redis) cannot be reached: `memory` (the "
        "default) counts in this replica's memory until it answers again (each replica "
        "against the whole limit: a tenant may get up to the replica count times its "
        "quota during the outage, never unlimited); `refuse` answers 503; `allow` lets "
        "requests through uncounted (logged).",
    )
    fail_open: bool | None = Field(
        default=None,
        description="Replaced by `on_storage_failure` (`allow` or `refuse`); refused.",
        json_schema_extra={"deprecated": True},
    )
    storage_timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="The most one limit check waits on the storage (connect and reply; "
        "no retries): a blackholed Redis costs this, not redis-py's default minute.",
    )
    storage_open_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="After a storage failure, how long checks skip the storage (the "
        "circuit is open: each answers at once by `on_storage_failure`) before one probe "
        "retries.",
    )

    @model_validator(mode="after")
    def _no_fail_open(self) -> RateLimitConfig:
        if self.fail_open is not None:
            choice = "allow" if self.fail_open else "refuse"
            raise ValueError(
                f"rate_limits.fail_open was replaced: write `on_storage_failure: {choice}`"
            )
        return self

    def tenant(self, name: str) -> TenantLimit:
        return self.tenants.get(name, self.per_tenant)

    def key(self, key_id: str) -> RateLimit:
        return self.keys.get(key_id, self.per_key)


class RouterConfig(StrictModel):
    """Which model answers a name, and the limits its answers are charged to."""

    models: list[ModelRoute] = Field(default_factory=list)
    providers: list[ProviderConfig] = Field(default_factory=list)
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    ready_refresh_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="How often the router refreshes which self-hosted models have a "
        "running replica (a model with none falls back at once).",
    )

    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelRoute]) -> list[ModelRoute]:
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError("model names must be unique")
        return models

    @model_validator(mode="after")
    def _references(self) -> RouterConfig:
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

    def router_fields(self) -> RouterConfig:
        """Only the router's part (of a gateway's config)."""
        return RouterConfig.model_validate(
            {name: getattr(self, name) for name in RouterConfig.model_fields}
        )
