"""The official `openai` client against the Serve HTTP endpoint, real CPU engine."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.support.stack import Stack

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
CLOCK_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


@pytest.fixture(scope="module")
def client(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.base_url, api_key="unused", timeout=120, max_retries=0)


@pytest.fixture(scope="module")
def tiny(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.tiny_url, api_key="unused", timeout=120, max_retries=0)


def test_models_lists_served_name(client: openai.OpenAI, stack: Stack) -> None:
    assert [m.id for m in client.models.list().data] == [stack.model]


def test_chat_answers_coherently(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.chat.completions.create(
        model=stack.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
        temperature=0,
    )
    choice = reply.choices[0]
    assert "Paris" in (choice.message.content or "")
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_chat_streaming(client: openai.OpenAI, stack: Stack) -> None:
    stream = client.chat.completions.create(
        model=stack.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_call_required_matches_schema(client: openai.OpenAI, stack: Stack) -> None:
    reply = client.chat.completions.create(
        model=stack.model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL, CLOCK_TOOL],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=256,
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls or []
    assert calls, reply
    by_name = {
        t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER_TOOL, CLOCK_TOOL)
    }
    for call in calls:
        assert call.function.name in by_name
        jsonschema.validate(json.loads(call.function.arguments), by_name[call.function.name])
    assert reply.choices[0].finish_reason == "tool_calls"


def test_tool_call_named_tool_streaming(client: openai.OpenAI, stack: Stack) -> None:
    stream = client.chat.completions.create(
        model=stack.model,
        messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=[WEATHER_TOOL, CLOCK_TOOL],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=256,
        temperature=0,
        stream=True,
    )
    names, arguments = set(), ""
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if call.function and call.function.name:
                names.add(call.function.name)
            if call.function and call.function.arguments:
                arguments += call.function.arguments
    assert names == {"get_time"}
    jsonschema.validate(json.loads(arguments), CLOCK_TOOL["function"]["parameters"])


def test_tool_choice_auto_with_tool_results_round_trip(tiny: openai.OpenAI, stack: Stack) -> None:
    # The tiny model's text is noise: this checks that `auto` is accepted and that
    # a whole tool conversation (assistant tool_calls, tool results) renders.
    reply = tiny.chat.completions.create(
        model=stack.tiny_model,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {
                            "name": "get_weather",
                            "arguments": '{"city": "Paris", "unit": "celsius"}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        tool_choice="auto",
        max_tokens=8,
    )
    assert reply.choices[0].finish_reason in {"stop", "length", "tool_calls"}
    assert reply.usage is not None and reply.usage.prompt_tokens > 40  # the tool and result


def test_completions_plain_and_streaming(tiny: openai.OpenAI, stack: Stack) -> None:
    reply = tiny.completions.create(model=stack.tiny_model, prompt="The runtime", max_tokens=8)
    assert reply.usage is not None and reply.usage.completion_tokens == 8
    assert reply.choices[0].finish_reason == "length"
    chunks = list(
        tiny.completions.create(
            model=stack.tiny_model, prompt="The runtime", max_tokens=8, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "length"
