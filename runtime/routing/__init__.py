"""The LLM router (``router``), its targets (``targets``), limits (``limits``) and
usage metering (``metering``): run by the gateway and by every agent replica."""

from runtime.routing.limits import Limiter
from runtime.routing.router import LLMRouter

__all__ = ["LLMRouter", "Limiter"]
