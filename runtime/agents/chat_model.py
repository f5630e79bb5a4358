"""LangChain chat models of the agent runtime.

``ServeChatModel`` calls an LLM deployment of the same cluster through a Serve
deployment handle: OpenAI-shaped request and response dicts, no HTTP hop;
streaming yields tokens and tool-call chunks. ``ScriptedChatModel`` is a
stand-in for an LLM's *choices* (replies from a script in the serve config), for
deterministic tests and for benchmarks of the runtime's own overhead.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NamedTuple

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from runtime.agents.errors import ModelCallError, RateLimitError
from runtime.agents.protocol import DEFAULT_TENANT
from runtime.config.agents import ScriptedLLM, ScriptStep, ServeLLM
from runtime.telemetry import tracing
from runtime.telemetry.tracing import SpanKind

_Tool = dict[str, Any] | type | Callable[..., Any] | BaseTool


#: The tenant of the run in progress (set by the agent service for each run's task):
#: LLM calls through the gateway's router are counted against it.
current_tenant: contextvars.ContextVar[str] = contextvars.ContextVar(
    "runtime_tenant", default=DEFAULT_TENANT
)


class UsageLabels(NamedTuple):
    """The agent and scenario an LLM call is counted for (usage and cost metrics)."""

    agent: str = "-"
    scenario: str = "default"


#: Set by the agent service for each run's task, like ``current_tenant``.
current_usage: contextvars.ContextVar[UsageLabels] = contextvars.ContextVar(
    "runtime_usage",
    default=UsageLabels(),  # noqa: B039 (a tuple: immutable)
)


def _llm_span_attributes(model: str) -> dict[str, Any]:
    agent, scenario = current_usage.get()
    return {"gen_ai.request.model": model, "runtime.agent": agent, "runtime.scenario": scenario}


def _annotate_usage(span: Any, usage: UsageMetadata | None) -> None:
    if usage:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage["input_tokens"],
                "gen_ai.usage.output_tokens": usage["output_tokens"],
            }
        )


class ServeChatModel(BaseChatModel):
    """A chat model backed by a ``runtime`` LLM deployment, reached by deployment handle.

    Example (inside a Serve replica, or a driver connected to the cluster)::

        model = ServeChatModel(handle=serve.get_deployment_handle("LLMServer", "llm"),
                               model="smollm2-135m-instruct")
        reply = await model.ainvoke("What is the capital of France?")
    """

    handle: Any
    model: str
    #: True: ``handle`` is the gateway's (its router, the tenant's limits).
    routed: bool = False
    temperature: float = 0.0
    max_tokens: int = 512
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "runtime-serve"

    @classmethod
    def from_config(cls, config: ServeLLM) -> ServeChatModel:
        from ray import serve

        if config.gateway is not None:
            handle = serve.get_deployment_handle("Gateway", app_name=config.gateway)
        else:
            handle = serve.get_deployment_handle(config.deployment, app_name=config.app)
        return cls(
            handle=handle,
            routed=config.gateway is not None,
            model=config.model,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
        )

    def bind_tools(
        self, tools: Sequence[_Tool], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = [convert_to_openai_tool(t) for t in tools]
        choice: str | dict[str, Any] | None = tool_choice
        if tool_choice == "any":
            choice = "required"
        elif tool_choice and tool_choice not in ("auto", "none", "required"):
            choice = {"type": "function", "function": {"name": tool_choice}}
        return self.model_copy(update={"tools": specs or None, "tool_choice": choice})

    def _call(self, body: dict[str, Any]) -> Any:
        if self.routed:
            return self.handle.llm.remote(current_tenant.get(), "chat", body, *current_usage.get())
        return self.handle.chat.remote(body)

    def _body(self, messages: list[BaseMessage], stop: list[str] | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": convert_to_openai_messages(messages),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.tools:
            body["tools"] = self.tools
            body["tool_choice"] = self.tool_choice or "auto"
        if stop:
            body["stop"] = stop
        return body

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with tracing.span(
            "llm.call", _llm_span_attributes(self.model), kind=SpanKind.CLIENT
        ) as span:
            try:
                response = await self._call(self._body(messages, stop))
            except Exception as exc:
                raise _model_error(exc) from None
            result = _chat_result(response)
            _annotate_usage(span, result.generations[0].message.usage_metadata)  # type: ignore[attr-defined]
        return result

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        try:
            response = self._call(self._body(messages, stop)).result()
        except Exception as exc:
            raise _model_error(exc) from None
        return _chat_result(response)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        body = self._body(messages, stop)
        body["stream_options"] = {"include_usage": True}
        handle = self.handle.options(stream=True)
        # The span is current only while the call starts (Serve carries the current
        # context to the replica then); a generator must not hold a context across yields.
        span = tracing.start("llm.call", _llm_span_attributes(self.model), kind=SpanKind.CLIENT)
        with tracing.use(span):
            if self.routed:
                stream = handle.llm_stream.remote(
                    current_tenant.get(), "chat", body, *current_usage.get()
                )
            else:
                stream = handle.chat_stream.remote(body)
        error: BaseException | None = None
        try:
            async for chunk in stream:
                message = _chunk_message(chunk)
                if message is None:
                    continue
                _annotate_usage(span, message.usage_metadata)
                if run_manager and isinstance(message.content, str) and message.content:
                    await run_manager.on_llm_new_token(message.content)
                yield ChatGenerationChunk(message=message)
        except asyncio.CancelledError as exc:
            error = exc
            stream.cancel()  # stops generation on the LLM replica
            raise
        except Exception as exc:
            error = _model_error(exc)
            raise error from None
        finally:
            tracing.end(span, error)


def _model_error(exc: BaseException) -> ModelCallError | RateLimitError:
    from runtime.llm.errors import LLMError

    if isinstance(exc, LLMError) and exc.status_code == 429:
        return RateLimitError(f"the LLM call was refused: {exc.message}")
    if isinstance(exc, LLMError):
        return ModelCallError(f"the LLM call failed: {exc.status_code} {exc.type}: {exc.message}")
    return ModelCallError(f"the LLM call failed: {type(exc).__name__}")


def _usage(raw: dict[str, Any] | None) -> UsageMetadata | None:
    if not raw:
        return None
    prompt, completion = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
    return UsageMetadata(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


def _chat_result(response: dict[str, Any]) -> ChatResult:
    choice = response["choices"][0]
    raw = choice.get("message") or {}
    calls, invalid = [], []
    for call in raw.get("tool_calls") or []:
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("tool arguments must be a JSON object")
            calls.append(tool_call(name=fn.get("name", ""), args=args, id=call.get("id")))
        except ValueError as err:
            invalid.append(
                invalid_tool_call(
                    name=fn.get("name"),
                    args=fn.get("arguments"),
                    id=call.get("id"),
                    error=str(err),
                )
            )
    message = AIMessage(
        content=raw.get("content") or "",
        tool_calls=calls,
        invalid_tool_calls=invalid,
        usage_metadata=_usage(response.get("usage")),
        response_metadata={
            "finish_reason": choice.get("finish_reason"),
            "model_name": response.get("model"),
        },
        id=response.get("id"),
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def _chunk_message(chunk: dict[str, Any]) -> AIMessageChunk | None:
    usage = _usage(chunk.get("usage"))
    choices = chunk.get("choices") or []
    if not choices:
        return AIMessageChunk(content="", usage_metadata=usage) if usage else None
    choice = choices[0]
    delta = choice.get("delta") or {}
    chunks = [
        tool_call_chunk(
            name=(c.get("function") or {}).get("name"),
            args=(c.get("function") or {}).get("arguments"),
            id=c.get("id"),
            index=c.get("index"),
        )
        for c in delta.get("tool_calls") or []
    ]
    metadata = {"finish_reason": choice["finish_reason"]} if choice.get("finish_reason") else {}
    return AIMessageChunk(
        content=delta.get("content") or "",
        tool_call_chunks=chunks,
        usage_metadata=usage,
        response_metadata=metadata,
        id=chunk.get("id"),
    )


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
        self, tools: Sequence[_Tool], *, tool_choice: str | None = None, **kwargs: Any
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
            "llm.call", {**_llm_span_attributes("scripted"), "runtime.stand_in": True}
        ) as span:
            message, delay = self._reply(messages)
            if delay:
                await asyncio.sleep(delay)
            _annotate_usage(span, message.usage_metadata)
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
        import time

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


def chat_model(config: ServeLLM | ScriptedLLM) -> BaseChatModel:
    """The chat model an agent's ``llm`` config names."""
    if isinstance(config, ScriptedLLM):
        return ScriptedChatModel(script=config)
    return ServeChatModel.from_config(config)
