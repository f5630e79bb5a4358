"""What one OpenAI request may ask of a model: checked, defaulted, and sized before it
reaches the model (the model's ``limits`` in the router's table, RequestLimits).

- ``n``, the prompts of a completions request, the messages of a chat request and
  ``max_tokens`` (``max_completion_tokens``) are capped; a request beyond is 400.
- A request that names no ``max_tokens`` gets the model's default (an engine would
  otherwise generate to the end of its context: 42 s on the CPU engine).
- A chat message's role must be one OpenAI's API knows (it answers 400 for others).
- ``reserve``: the most tokens the request can generate (``n x max_tokens x prompts``),
  which the router charges to the token limits before the call.
"""

from __future__ import annotations

from typing import Any

from runtime.config.router import RequestLimits
from runtime.errors import InvalidInputError, quote

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def _int(body: dict[str, Any], field: str, default: int, low: int, high: int) -> int:
    value = body.get(field, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInputError(
            f"`{field}` must be a whole number from {low} to {high}", param=field
        )
    return value


def prepare(method: str, body: dict[str, Any], limits: RequestLimits) -> tuple[dict[str, Any], int]:
    """The body to send (``max_tokens`` defaulted), and the tokens it may generate."""
    n = _int(body, "n", 1, 1, limits.max_n)
    # Both names are checked (an engine may read either); the larger is reserved.
    asked = {
        f: _int(body, f, limits.default_max_tokens, 1, limits.max_tokens)
        for f in ("max_tokens", "max_completion_tokens")
        if body.get(f) is not None
    }
    max_tokens = max(asked.values(), default=limits.default_max_tokens)
    if method != "chat" or not asked:  # completions know `max_tokens` only
        body = {k: v for k, v in body.items() if k != "max_completion_tokens"}
        asked = {"max_tokens": max_tokens}
    prompts = 1
    if method == "chat":
        messages = body.get("messages", [])
        if not isinstance(messages, list):
            raise InvalidInputError("`messages` must be a list", param="messages")
        if len(messages) > limits.max_messages:
            raise InvalidInputError(
                f"at most {limits.max_messages} messages per request", param="messages"
            )
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if not isinstance(role, str) or role not in ROLES:
                raise InvalidInputError(
                    f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}, "
                    f"not {quote(role)}",
                    param=f"messages[{i}].role",
                )
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int):
            prompts = len(prompt)  # a list of prompts (strings, or lists of token ids)
        if prompts > limits.max_prompts:
            raise InvalidInputError(
                f"at most {limits.max_prompts} prompts per request", param="prompt"
            )
    best_of = body.get("best_of")
    if best_of is not None:
        n = max(n, _int(body, "best_of", n, n, limits.max_n))
    return {**body, **asked}, n * max_tokens * prompts
