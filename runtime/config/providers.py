"""Config of external OpenAI-compatible LLM providers (``runtime.providers``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from runtime.config.llm import StrictModel


class Timeouts(StrictModel):
    connect_s: float = Field(default=5.0, gt=0, le=120, description="TCP and TLS connect.")
    first_byte_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest wait for any bytes (the answer, or the next streamed chunk).",
    )
    total_s: float = Field(default=120.0, gt=0, le=3600, description="One attempt, end to end.")


class Retries(StrictModel):
    """Retries of retryable failures only: connection errors, timeouts before the first
    byte, and the statuses in ``on_status``. A stream that has started is never retried."""

    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_initial_s: float = Field(default=0.25, gt=0, le=60)
    backoff_max_s: float = Field(default=8.0, gt=0, le=300)
    on_status: list[int] = Field(default_factory=lambda: [408, 429, 500, 502, 503, 504])

    @model_validator(mode="after")
    def _order(self) -> Retries:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be at least "
                f"backoff_initial_s ({self.backoff_initial_s})"
            )
        return self


class Circuit(StrictModel):
    """After ``failure_threshold`` failed attempts in a row the provider is skipped
    (calls fail at once, so a fallback takes over) for ``open_s``; then one probe call
    decides whether it is healthy again."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    open_s: float = Field(default=30.0, gt=0, le=3600)


class RateLimit(StrictModel):
    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Prompt plus completion tokens."
    )


class ProviderConfig(StrictModel):
    """One OpenAI-compatible API (OpenAI, a hosted vLLM, ...)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    base_url: str = Field(
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$", description="Up to and including `/v1`."
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable with the API key (from a Secret); never logged.",
    )
    models: dict[str, str] = Field(
        default_factory=dict,
        description="Model name clients use -> the provider's name; others pass unchanged.",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    retries: Retries = Field(default_factory=Retries)
    circuit: Circuit = Field(default_factory=Circuit)
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="The provider's quota: over it, calls go to the fallback at once "
        "(counted where the gateway counts tenants: memory or Redis).",
    )
