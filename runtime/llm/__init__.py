"""LLM serving: a Ray Serve deployment around vLLM's engine and OpenAI layer."""

from runtime.errors import LLMError

__all__ = ["LLMError"]
