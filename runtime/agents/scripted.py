"""``ScriptedChatModel``: a stand-in for an LLM's *choices*, not a model.

Replies follow a script from the serve config (:class:`~runtime.config.agents.ScriptedLLM`),
for deterministic tests and for benchmarks of the runtime's own overhead (no model time).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from runtime.agents.chat_model import Tool, annotate_usage, llm_span_attributes
from runtime.config.agents import ScriptedLLM, ScriptStep
from runtime.telemetry import tracing


class ScriptedChatModel(BaseChatModel):
    """Stand-in for an LLM's choices: replies follow ``script`` (see :class:`ScriptedLLM`).

    The reply depends only on the conversation: the first rule whose ``when`` occurs in
    the last user message (and ``system`` in the system prompt) picks the steps, and the
    number of assistant messages since that user message picks the step. So a session
    continued on another replica, or after a crash, gets the same replies as one that
    never moved.
    """

    script: ScriptedLLM

    @property
    def _llm_type(self) -> str:
        return "runtime-scripted"

    def bind_tools(
        self, tools: Sequence[Tool], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self

    def _reply(self, messages: list[BaseMessage]) -> tuple[AIMessage, float]:
        last_user = max(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1
        )
        user = messages[last_user].text if last_user >= 0 else ""
        done = sum(isinstance(m, AIMessage) for m in messages[last_user + 1 :])
        system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
        rule = next((r for r in self.script.rules if r.when in user and r.system in system), None)
        if rule is None:
            step = ScriptStep(answer="(no script rule matches this message)")
        elif rule.repeat:
            step = rule.steps[done % len(rule.steps)]
        else:
            step = rule.steps[min(done, len(rule.steps) - 1)]
        tool_results = [m for m in messages[last_user + 1 :] if isinstance(m, ToolMessage)]
        prompt_tokens = sum(len(m.text.split()) for m in messages) * self.script.tokens_per_word
        if step.tool is not None:
            call = tool_call(
                name=step.tool, args=dict(step.args), id=f"call_{uuid.uuid4().hex[:12]}"
            )
            text, calls = "", [call]
        else:
            last = tool_results[-1].text if tool_results else ""
            text = (step.answer or "").replace("{last_tool_result}", last).replace("{user}", user)
            calls = []
        out_tokens = max(1, len(text.split()) + 8 * len(calls)) * self.script.tokens_per_word
        usage = UsageMetadata(
            input_tokens=prompt_tokens,
            output_tokens=out_tokens,
            total_tokens=prompt_tokens + out_tokens,
        )
        return AIMessage(content=text, tool_calls=calls, usage_metadata=usage), step.delay_s

    async def _traced_reply(self, messages: list[BaseMessage]) -> AIMessage:
        """The scripted reply after its delay, in an ``llm.call`` span as a model's."""
        with tracing.span(
            "llm.call", {**llm_span_attributes("scripted"), "runtime.stand_in": True}
        ) as span:
            message, delay = self._reply(messages)
            if delay:
                await asyncio.sleep(delay)
            annotate_usage(span, message.usage_metadata)
        return message

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = await self._traced_reply(messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message, delay = self._reply(messages)
        time.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        message = await self._traced_reply(messages)
        words = message.text.split(" ") if message.text else []
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            if run_manager:
                await run_manager.on_llm_new_token(text)
            yield ChatGenerationChunk(message=AIMessageChunk(content=text))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                tool_call_chunks=[
                    tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                    for i, c in enumerate(message.tool_calls)
                ],
                usage_metadata=message.usage_metadata,
            )
        )
