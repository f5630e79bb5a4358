"""``tool_choice: auto`` for small models: decide whether to call a tool, then call it.

Under ``auto`` vLLM already constrains *how* a call is written (with
``tool_strict_level: parameter``, a hermes call's name and arguments follow the tools'
schemas), but not *whether* the model writes one: a 135M model almost never starts
its answer with ``<tool_call>``, even for "17 * 23". With ``tool_choice.auto:
decide`` the replica first asks the engine for one token, with its log-probabilities,
on the same prompt: the probability that the answer starts with the call marker
(``<tool_call>`` begins with the token ``<``) is the model's own inclination to call.
At or above ``call_threshold`` the request goes on with ``tool_choice: required`` (a
schema-valid call of one of the tools, chosen by the model); below it, unchanged.

It decides only for a user's message: after a tool's result the model answers (or
calls again) on its own, which keeps agents from looping on calls. The probe costs
one prefill of the prompt, which the engine's prefix cache then reuses.
"""

from __future__ import annotations

import math
from typing import Any

CALL_MARKER = "<tool_call>"  # hermes, as runtime/llm/templates/chatml-tools.jinja writes it
_TOP = 20  # vLLM's default --max-logprobs


def applies(body: dict[str, Any]) -> bool:
    """Whether the request leaves the choice to the model (tools, ``auto``) right after
    a user's message, with nothing else constraining or continuing the answer (a
    ``response_format`` or ``structured_outputs`` would be dropped under ``required``;
    a continued message's first token says nothing about a call)."""
    if not body.get("tools") or body.get("tool_choice", "auto") != "auto":
        return False
    if body.get("response_format") or body.get("structured_outputs"):
        return False
    if body.get("continue_final_message") or body.get("add_generation_prompt") is False:
        return False
    history = body.get("messages")
    if not isinstance(history, list) or not history or not isinstance(history[-1], dict):
        return False
    return bool(history[-1].get("role") == "user")


def probe(body: dict[str, Any], top: int = _TOP) -> dict[str, Any]:
    """The one-token request whose log-probabilities (the ``top`` most likely tokens,
    at most the engine's ``--max-logprobs``) say how likely a call is."""
    keep = {k: v for k, v in body.items() if k not in _NOT_IN_PROBE}
    return {**keep, "max_tokens": 1, "logprobs": True, "top_logprobs": top, "n": 1}


_NOT_IN_PROBE = {
    "max_tokens",
    "max_completion_tokens",
    "stream",
    "stream_options",
    "n",
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "min_tokens",
}


def call_probability(reply: dict[str, Any]) -> float:
    """The share of the first token's probability on tokens that begin the call marker."""
    choices = reply.get("choices") or [{}]
    content = ((choices[0].get("logprobs") or {}).get("content")) or []
    if not content:
        return 0.0
    tops = content[0].get("top_logprobs") or []
    seen = {t["token"]: t["logprob"] for t in tops if t.get("token")}
    return sum(math.exp(lp) for tok, lp in seen.items() if CALL_MARKER.startswith(tok))


def decided(body: dict[str, Any], probability: float, threshold: float) -> dict[str, Any]:
    """``body`` with ``tool_choice: required`` when the model leans to a call."""
    return {**body, "tool_choice": "required"} if probability >= threshold else body
