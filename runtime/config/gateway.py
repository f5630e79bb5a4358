"""Config of the gateway: the ``args`` of ``runtime.apps:build_gateway_app``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from runtime.config.llm import StrictModel
from runtime.config.placement import CPU_PLACEMENT_DOC, CpuPlacement
from runtime.config.router import (  # noqa: F401 (the gateway's config names them)
    ModelRoute,
    RateLimitConfig,
    RouterConfig,
    TenantLimit,
)
from runtime.config.telemetry import SCENARIO, TelemetryConfig

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$"
#: A tenant or key id (also a JWT's tenant claim).
TENANT_PATTERN = _NAME


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
    token has none, from ``default_scopes`` (none by default: a token that names no
    scope may use nothing). Only asymmetric algorithms are accepted, so the gateway
    holds no signing secret. The tenant claim must be a well-formed tenant name, and may
    not be one of this gateway's API-key tenants (or its local tenant) unless
    ``shared_tenants`` lists it: an identity provider's user must not alias "local".
    ``jwks_url`` is https (plain http only to this machine: a key fetched over a network
    in the clear could be anyone's).
    """

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    jwks_file: str | None = Field(default=None, description="A JWKS JSON file (a mounted Secret).")
    jwks_url: str | None = Field(
        default=None,
        pattern=r"^(https://\S+|http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?/[^\s@]*)$",
    )
    jwks_cache_s: float = Field(
        default=300.0, gt=0, le=86400, description="How long keys from jwks_url are kept."
    )
    algorithms: list[_ASYMMETRIC] = Field(default=["RS256", "ES256"], min_length=1)
    tenant_claim: str = Field(default="tenant", min_length=1)
    leeway_s: float = Field(default=30.0, ge=0, le=600, description="Clock skew allowed.")
    default_scopes: Scopes = Field(default_factory=lambda: Scopes(models=[], agents=[]))
    shared_tenants: list[str] = Field(
        default_factory=list,
        description="API-key tenants that tokens may name too (none by default).",
    )

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


class GatewayAppConfig(RouterConfig):
    """The front door: authentication, tenants, and routes to models and agents. Its
    router's fields (``models``, ``providers``, ``rate_limits``, ``ready_refresh_s``)
    are :class:`RouterConfig`'s."""

    agent_apps: list[str] = Field(
        default_factory=list, description="Applications built by build_agent_app."
    )
    auth: AuthConfig = Field(default_factory=AuthConfig)
    placement: CpuPlacement = Field(default="cpu-worker", description=CPU_PLACEMENT_DOC)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="The most a request's body may take to arrive (408 beyond): a client "
        "trickling a body holds a connection and a handler only this long.",
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
