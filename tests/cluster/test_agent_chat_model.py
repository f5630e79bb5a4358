"""ServeChatModel against the real LLM deployments, through deployment handles from the
driver: text, usage, tool calls (whole and streamed) and errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk

from runtime.agents.chat_model import ServeChatModel
from runtime.agents.tools import calculator
from runtime.config.agents import ServeLLM
from runtime.errors import ModelCallError
from tests.support.stack import Stack


def _model(app: str, model: str, **kw: Any) -> ServeChatModel:
    return ServeChatModel.from_config(ServeLLM(app=app, model=model, **kw))


def test_text_and_usage(stack: Stack) -> None:
    model = _model("llm", stack.model, max_tokens=32)
    reply = asyncio.run(model.ainvoke("What is the capital of France?"))
    assert "paris" in reply.text.lower()
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    assert reply.response_metadata["finish_reason"] in ("stop", "length")


def test_streamed_text_matches_the_whole(stack: Stack) -> None:
    model = _model("llm", stack.model, max_tokens=24)

    async def both() -> tuple[str, str, Any]:
        whole = await model.ainvoke("Name a colour.")
        chunks = [c async for c in model.astream("Name a colour.")]
        merged = chunks[0]
        for c in chunks[1:]:
            merged += c
        return whole.text, merged.text, merged.usage_metadata

    whole, streamed, usage = asyncio.run(both())
    assert streamed == whole and whole  # temperature 0: the same tokens
    assert usage is not None and usage["output_tokens"] > 0


@pytest.mark.parametrize(("choice", "stream"), [("calculator", False), ("required", True)])
def test_tool_call(stack: Stack, choice: str, stream: bool) -> None:
    model = _model("llm", stack.model, max_tokens=100).bind_tools([calculator], tool_choice=choice)
    question = "What is 2+3? Use the calculator."

    async def call() -> Any:
        if not stream:
            return await model.ainvoke(question)
        merged: AIMessageChunk | None = None
        async for chunk in model.astream(question):  # tool-call chunks, merged
            merged = chunk if merged is None else merged + chunk
        return merged

    reply = asyncio.run(call())
    assert len(reply.tool_calls) == 1
    assert reply.tool_calls[0]["name"] == "calculator"
    assert calculator.invoke(reply.tool_calls[0]["args"]) == "5"
    assert reply.tool_calls[0]["id"]


def test_llm_errors_become_model_errors(stack: Stack) -> None:
    model = _model("llm", "no-such-model")
    with pytest.raises(ModelCallError, match="404"):
        asyncio.run(model.ainvoke("hi"))
    with pytest.raises(ModelCallError, match="404"):
        asyncio.run(_drain(model))


async def _drain(model: ServeChatModel) -> None:
    async for _ in model.astream("hi"):
        pass
