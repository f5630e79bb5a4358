"""Config of logs and traces (``args.telemetry``) and of prices (cost metrics)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from runtime.config.base import StrictModel


class TelemetryConfig(StrictModel):
    """``args.telemetry`` of any application built by the runtime.

    Traces are switched on for the whole Serve instance by the serve config's top-level
    ``tracing_config`` (Ray Serve's); prompts and completions by ``$RUNTIME_LOG_CONTENT``
    in the replicas' environment, never by a config file (docs/observability.md).
    """

    redact_patterns: list[str] = Field(
        default_factory=list,
        description="Regular expressions (Python syntax) removed from every log record, "
        "span attribute and error body of this application's replicas, on top of the "
        "built-in ones (keys, tokens, passwords, the environment's secrets).",
    )

    @field_validator("redact_patterns")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                compiled = re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {err}") from None
            if compiled.fullmatch(""):
                raise ValueError(f"{pattern!r} matches the empty string")
        return patterns


class TokenPrice(StrictModel):
    """A model priced per token (an external provider's list price, or an internal rate
    for a self-hosted model), in US dollars per million tokens."""

    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")


class GpuPrice(StrictModel):
    """A self-hosted model priced by the GPUs its replicas hold, used or idle."""

    per_gpu_second: float = Field(gt=0, description="USD per GPU-second of a replica.")


#: Scenario names (a bounded cost label: configured, never taken from free input).
SCENARIO = r"^[a-z][a-z0-9_-]{0,62}$"
