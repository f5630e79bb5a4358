"""Calls to external OpenAI-compatible LLM providers: timeouts, retries with backoff and
jitter on retryable failures only, a circuit breaker, and fallback between targets."""
