"""Pure pieces of the agents, without Ray: message conversions (openai_format), the
event translation of a turn (events), how a turn ends (outcomes), the call context."""

from __future__ import annotations

import asyncio
import contextvars

from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langgraph.errors import GraphRecursionError

from runtime import context
from runtime.agents import openai_format, outcomes
from runtime.agents.events import Transcript
from runtime.agents.protocol import RunEvent, Usage
from runtime.config.agents import Budgets
from runtime.context import CallContext
from runtime.errors import BudgetExceededError, RunCancelledError, RunFailedError, SessionBusyError


def test_a_reply_with_tool_calls_and_usage_becomes_an_ai_message() -> None:
    reply = {
        "id": "r1",
        "model": "m",
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "calc", "arguments": '{"x": 1}'}},
                        {"id": "c2", "function": {"name": "calc", "arguments": "[1]"}},
                        {"id": "c3", "function": {"name": "calc", "arguments": "{oops"}},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3},
    }
    message = openai_format.chat_result(reply).generations[0].message
    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"], c["id"]) for c in message.tool_calls] == [
        ("calc", {"x": 1}, "c1")
    ]
    assert [c["id"] for c in message.invalid_tool_calls] == ["c2", "c3"]
    assert message.usage_metadata == {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10}
    assert message.response_metadata == {"finish_reason": "tool_calls", "model_name": "m"}


def test_stream_chunks_become_message_chunks() -> None:
    chunk = {
        "id": "r1",
        "choices": [
            {
                "delta": {
                    "content": "he",
                    "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "calc"}}],
                },
                "finish_reason": None,
            }
        ],
    }
    message = openai_format.chunk_message(chunk)
    assert isinstance(message, AIMessageChunk) and message.content == "he"
    assert message.tool_call_chunks[0]["name"] == "calc"
    usage_only = openai_format.chunk_message(
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}
    )
    assert usage_only is not None and usage_only.usage_metadata["total_tokens"] == 3
    assert openai_format.chunk_message({"choices": []}) is None


def test_the_request_body_and_tool_choice() -> None:
    body = openai_format.request_body(
        "m",
        [HumanMessage("hi")],
        temperature=0.0,
        max_tokens=5,
        tools=[{"type": "function", "function": {"name": "calc"}}],
        stop=["\n"],
    )
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["tool_choice"], body["stop"], body["max_tokens"]) == ("auto", ["\n"], 5)
    assert "tools" not in openai_format.request_body("m", [], temperature=0, max_tokens=1)
    assert openai_format.tool_choice_of("any") == "required"
    assert openai_format.tool_choice_of("calc") == {
        "type": "function",
        "function": {"name": "calc"},
    }
    assert openai_format.tool_choice_of("auto") == "auto"


def test_a_transcript_translates_a_turns_stream_into_events() -> None:
    events: list[RunEvent] = []
    transcript = Transcript("run-1", events.append)
    call = {"name": "calc", "args": {"x": 1}, "id": "c1"}
    transcript.add("messages", (AIMessageChunk(content="thinking"), {"langgraph_node": "model"}))
    transcript.add("updates", {"model": {"messages": [AIMessage("", tool_calls=[call])]}})
    transcript.add(
        "updates", {"tools": {"messages": [ToolMessage("2", tool_call_id="c1", name="calc")]}}
    )
    transcript.add("updates", {"__interrupt__": ()})
    transcript.add("updates", {"model": {"messages": [AIMessage("the answer is 2")]}})
    assert [e.type for e in events] == [
        "token",
        "tool_call",
        "step",
        "tool_result",
        "step",
        "step",
    ]
    assert [e.index for e in events if e.type == "step"] == [1, 2, 3]
    result = transcript.result("s1", Usage(input_tokens=1), 0.5)
    assert (result.answer, result.steps, result.run_id) == ("the answer is 2", 3, "run-1")
    assert [c.name for c in result.tool_calls] == ["calc"]
    assert [r.content for r in result.tool_results] == ["2"]


def test_how_a_turn_ends() -> None:
    budgets = Budgets(max_steps=4, max_seconds=2)
    cancelled = outcomes.failure(
        asyncio.CancelledError(), budgets, "interrupted by a newer message"
    )
    assert isinstance(cancelled, RunCancelledError) and "interrupted" in cancelled.message
    assert "budget of 2 s" in outcomes.failure(TimeoutError(), budgets, None).message
    over = outcomes.failure(GraphRecursionError(), budgets, None)
    assert isinstance(over, BudgetExceededError) and "4 steps" in over.message
    busy = SessionBusyError("busy")
    assert outcomes.failure(busy, budgets, None) is busy
    import psycopg

    # PostgreSQL restarting mid-turn: retryable (the SDK resumes it), not a failed run.
    down = outcomes.failure(psycopg.OperationalError("server closed the connection"), budgets, None)
    assert down.type == "unavailable" and "session store is unreachable" in down.message
    failed = outcomes.failure(KeyError("secret"), budgets, None)
    assert isinstance(failed, RunFailedError) and "secret" not in failed.message
    event = outcomes.error_event("r", failed)
    assert outcomes.label(event) == "run_failed"
    assert outcomes.label(RunEvent(type="final", run_id="r")) == "ok"


def test_the_call_context_is_bound_per_task() -> None:
    async def in_task(tenant: str) -> str:
        context.bind(CallContext(tenant=tenant))
        await asyncio.sleep(0)
        return context.current().tenant

    async def both() -> list[str]:
        return list(await asyncio.gather(in_task("a"), in_task("b")))

    assert asyncio.run(both()) == ["a", "b"]
    fresh = contextvars.Context()
    assert fresh.run(context.current).tenant == "default"
    assert fresh.run(context.bound) is None


def test_a_models_errors_as_the_turn_sees_them() -> None:
    from runtime.agents.chat_model import model_error
    from runtime.errors import LLMError, ModelCallError, RateLimitError

    limited = model_error(LLMError("slow down", 429, "RateLimitError"))
    assert isinstance(limited, RateLimitError) and "refused: slow down" in limited.message
    failed = model_error(LLMError("no such model", 404, "NotFoundError"))
    assert isinstance(failed, ModelCallError) and "404 NotFoundError" in failed.message
    assert model_error(KeyError("x")).message == "the LLM call failed: KeyError"
