"""LLM serving: a Ray Serve deployment around vLLM's engine and OpenAI layer."""

from runtime.llm.errors import LLMError

__all__ = ["LLMError"]
