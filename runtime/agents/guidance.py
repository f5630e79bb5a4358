r"""When a small model should call a tool: ``options.call_when``, rules in the config.

The embedded SmolLM2-135M, told "use the calculator for arithmetic", answers "48 * 12"
from its own (wrong) arithmetic. Neither the first token's probability of a call
(``tool_choice.auto: decide``), nor worked examples in front of the conversation, nor
a "which tool?" step scored by the model's likelihood of each answer tells its
arithmetic questions from its plain ones (docs/agents.md#small-models). Told *which*
tool to call, it writes the right arguments for most of them (schema-constrained by
vLLM) and answers with the result. So the agent's config may say when to call:

    options:
      call_when:
        calculator: '\d\s*[-+*/]\s*\d|\b(plus|minus|times|divided)\b'
        clock: '\b(what time|date|today)\b'

Per tool, a regular expression: a user's message that matches one gets that tool's
call forced on the turn's first model call (the first matching tool, in the order
written); afterwards the model goes on by itself (it answers with the result, or calls
again). A message that matches none is left to the model. Patterns are matched
case-insensitively over the message's first ``MATCH_CHARS`` characters, with the
``regex`` package under a time limit (``MATCH_TIMEOUT_S``): a pattern that backtracks
on a hostile message costs that, then counts as no match. With a model that chooses
well by itself, leave them out; once the runtime serves embeddings, preselection by
similarity can replace the patterns.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import regex
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import HumanMessage

MAX_PATTERN = 1000
#: The most one pattern may take on one message before it counts as no match (it runs
#: on the replica's event loop, and holds it).
MATCH_TIMEOUT_S = 0.02
#: Only a message's beginning is matched: a question to route is short, and a hostile
#: message's length then costs nothing.
MATCH_CHARS = 2000

logger = logging.getLogger(__name__)


def parse_call_when(raw: Any, tools: list[str]) -> dict[str, regex.Pattern[str]]:
    """``options.call_when``, compiled: tool name -> pattern, in the order written."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("options.call_when must map tool names to regular expressions")
    rules = {}
    for tool, pattern in raw.items():
        if tool not in tools:
            raise ValueError(f"options.call_when: {tool!r} is not one of the agent's tools {tools}")
        if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN:
            raise ValueError(
                f"options.call_when.{tool}: a regular expression of 1 to {MAX_PATTERN} characters"
            )
        try:
            rules[tool] = regex.compile(pattern, regex.IGNORECASE)
        except regex.error as err:
            raise ValueError(f"options.call_when.{tool}: {err}") from None
    return rules


def tool_to_call(rules: dict[str, regex.Pattern[str]], text: str) -> str | None:
    """The first tool whose pattern matches the beginning of ``text``; None when none
    does (or one ran out of time: logged, without the text)."""
    head = text[:MATCH_CHARS]
    for tool, pattern in rules.items():
        try:
            if pattern.search(head, timeout=MATCH_TIMEOUT_S):
                return tool
        except TimeoutError:
            logger.warning("call_when pattern of %r ran out of time: no match", tool)
    return None


class CallWhen(AgentMiddleware):
    """Forces the call a rule names on the first model call after a user's message."""

    def __init__(self, rules: dict[str, regex.Pattern[str]]) -> None:
        super().__init__()
        self.rules = rules

    def _decided(self, request: ModelRequest) -> ModelRequest:
        last = request.messages[-1] if request.messages else None
        if not isinstance(last, HumanMessage) or request.tool_choice not in (None, "auto"):
            return request
        tool = tool_to_call(self.rules, last.text)
        return request.override(tool_choice=tool) if tool else request

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        return handler(self._decided(request))

    async def awrap_model_call(
        self,
        request: ModelRequest,
        handler: Callable[[ModelRequest], Awaitable[ModelResponse]],
    ) -> ModelResponse:
        return await handler(self._decided(request))


def middleware(options: dict[str, Any], tools: list[str]) -> list[AgentMiddleware]:
    """The guidance an agent's options ask for."""
    found: list[AgentMiddleware] = []
    if rules := parse_call_when(options.get("call_when"), tools):
        found.append(CallWhen(rules))
    return found
