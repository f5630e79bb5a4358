"""``ServeChatModel``: the LangChain chat model of the agents, on the LLM router.

Every call goes through the :class:`~runtime.routing.LLMRouter` of its replica, under
the turn's :class:`~runtime.context.CallContext` (tenant, agent, scenario): one Serve
hop to the model's deployment (or one HTTP call to a provider), with the model's
fallbacks and the tenant's token limits. Streaming yields tokens and tool-call
chunks. The scripted stand-in model is ``runtime.agents.scripted``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from runtime import context
from runtime.agents import openai_format
from runtime.config.agents import ScriptedLLM, ServeLLM
from runtime.config.router import RouterConfig
from runtime.errors import APIError, ModelCallError, RateLimitError
from runtime.routing import LLMRouter
from runtime.telemetry import tracing
from runtime.telemetry.tracing import SpanKind

Tool = dict[str, Any] | type | Callable[..., Any] | BaseTool


def llm_span_attributes(model: str) -> dict[str, Any]:
    ctx = context.current()
    return {
        "gen_ai.request.model": model,
        "runtime.agent": ctx.agent,
        "runtime.scenario": ctx.scenario,
    }


def annotate_usage(span: Any, usage: UsageMetadata | None) -> None:
    if usage:
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": usage["input_tokens"],
                "gen_ai.usage.output_tokens": usage["output_tokens"],
            }
        )


def model_error(exc: BaseException) -> APIError:
    """What an agent's failed LLM call raises in the turn (the message names the model's
    status and type, never its input)."""
    exc = APIError.cause(exc)  # a model replica's own error, not Ray's wrapper of it
    if isinstance(exc, APIError) and exc.status == 429:
        return RateLimitError(f"the LLM call was refused: {exc.message}", exc.retry_after or 1)
    if isinstance(exc, APIError):
        return ModelCallError(f"the LLM call failed: {exc.status} {exc.type}: {exc.message}")
    return ModelCallError(f"the LLM call failed: {type(exc).__name__}")


class ServeChatModel(BaseChatModel):
    """A chat model on the runtime's LLM router.

    Example (inside a Serve replica, or a driver connected to the cluster)::

        model = ServeChatModel.from_config(ServeLLM(model="smollm2-135m-instruct"))
        reply = await model.ainvoke("What is the capital of France?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: LLMRouter = Field(exclude=True)
    model: str
    temperature: float = 0.0
    max_tokens: int = 512
    #: How long a call waits for an unavailable model (``ServeLLM.unavailable_wait_s``).
    unavailable_wait_s: float = 0.0
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "runtime-serve"

    @classmethod
    def from_config(cls, config: ServeLLM, router: LLMRouter | None = None) -> ServeChatModel:
        """``router``: the application's; without one, a router of this model alone (its
        deployment by handle)."""
        if router is None:
            router = LLMRouter(RouterConfig(models=[config.route()]))
        return cls(
            router=router,
            model=config.model,
            temperature=config.temperature,
            max_tokens=config.max_tokens,
            unavailable_wait_s=config.unavailable_wait_s,
        )

    def bind_tools(
        self, tools: Sequence[Tool], *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        specs = [convert_to_openai_tool(t) for t in tools]
        choice = openai_format.tool_choice_of(tool_choice)
        return self.model_copy(update={"tools": specs or None, "tool_choice": choice})

    def _body(self, messages: list[BaseMessage], stop: list[str] | None) -> dict[str, Any]:
        return openai_format.request_body(
            self.model,
            messages,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            tools=self.tools,
            tool_choice=self.tool_choice,
            stop=stop,
        )

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        attributes = llm_span_attributes(self.model)
        with tracing.span("llm.call", attributes, kind=SpanKind.CLIENT) as span:
            try:
                body = self._body(messages, stop)
                reply = await self.router.call(
                    context.current(), "chat", body, patience_s=self.unavailable_wait_s
                )
            except Exception as exc:
                raise model_error(exc) from None
            result = openai_format.chat_result(reply)
            annotate_usage(span, result.generations[0].message.usage_metadata)  # type: ignore[attr-defined]
        return result

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return _run_sync(self._agenerate(messages, stop))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        body = self._body(messages, stop)
        body["stream_options"] = {"include_usage": True}
        # The span is current only while the call starts (Serve carries the current
        # context to the replica then); a generator must not hold a context across yields.
        span = tracing.start("llm.call", llm_span_attributes(self.model), kind=SpanKind.CLIENT)
        stream = self.router.stream(
            context.current(), "chat", body, patience_s=self.unavailable_wait_s
        )
        error: BaseException | None = None
        try:
            # The first step (admission, the handle call) in this task and under the
            # span: the provider's deadline (asyncio.timeout_at) then covers the stream.
            with tracing.use(span):
                chunk = await anext(stream, None)
            while chunk is not None:
                message = openai_format.chunk_message(chunk)
                if message is not None:
                    annotate_usage(span, message.usage_metadata)
                    if run_manager and isinstance(message.content, str) and message.content:
                        await run_manager.on_llm_new_token(message.content)
                    yield ChatGenerationChunk(message=message)
                chunk = await anext(stream, None)
        except asyncio.CancelledError as exc:
            error = exc
            raise
        except Exception as exc:
            error = model_error(exc)
            raise error from None
        finally:
            await stream.aclose()  # stops generation on the LLM replica
            tracing.end(span, error)


def _run_sync(work: Coroutine[Any, Any, ChatResult]) -> ChatResult:
    """A coroutine's result from sync code (its own event loop, in a worker thread when
    this thread runs one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # the tenant and trace go along
        return pool.submit(contextvars.copy_context().run, asyncio.run, work).result()


def chat_model(config: ServeLLM | ScriptedLLM, router: LLMRouter | None = None) -> BaseChatModel:
    """The chat model an agent's ``llm`` config names (``router``: its application's)."""
    if isinstance(config, ScriptedLLM):
        from runtime.agents.scripted import ScriptedChatModel

        return ScriptedChatModel(script=config)
    return ServeChatModel.from_config(config, router)
