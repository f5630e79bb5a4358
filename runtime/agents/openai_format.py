"""Conversions between LangChain's messages and OpenAI's chat dicts (pure functions).

``request_body`` builds the chat request a LangChain model call makes; ``chat_result``
and ``chunk_message`` read a reply and a streamed chunk back into LangChain's
messages, tool calls (invalid JSON arguments become ``invalid_tool_calls``) and usage.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    convert_to_openai_messages,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatResult


def request_body(
    model: str,
    messages: list[BaseMessage],
    *,
    temperature: float,
    max_tokens: int,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    stop: list[str] | None = None,
) -> dict[str, Any]:
    """The OpenAI chat request of one model call."""
    body: dict[str, Any] = {
        "model": model,
        "messages": convert_to_openai_messages(messages),
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if tools:
        body["tools"] = tools
        body["tool_choice"] = tool_choice or "auto"
    if stop:
        body["stop"] = stop
    return body


def tool_choice_of(tool_choice: str | None) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` (``any``, a tool's name, ...) as OpenAI's."""
    if tool_choice == "any":
        return "required"
    if tool_choice and tool_choice not in ("auto", "none", "required"):
        return {"type": "function", "function": {"name": tool_choice}}
    return tool_choice


def usage(raw: dict[str, Any] | None) -> UsageMetadata | None:
    if not raw:
        return None
    prompt, completion = int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0)
    return UsageMetadata(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


def chat_result(response: dict[str, Any]) -> ChatResult:
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
        usage_metadata=usage(response.get("usage")),
        response_metadata={
            "finish_reason": choice.get("finish_reason"),
            "model_name": response.get("model"),
        },
        id=response.get("id"),
    )
    return ChatResult(generations=[ChatGeneration(message=message)])


def chunk_message(chunk: dict[str, Any]) -> AIMessageChunk | None:
    used = usage(chunk.get("usage"))
    choices = chunk.get("choices") or []
    if not choices:
        return AIMessageChunk(content="", usage_metadata=used) if used else None
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
        usage_metadata=used,
        response_metadata=metadata,
        id=chunk.get("id"),
    )
