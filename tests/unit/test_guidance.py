"""``options.call_when`` (runtime/agents/guidance.py): the ``assistant`` factory forces
the call a rule names on a turn's first model call, and leaves the rest to the model.

The model here is a recording stand-in (its replies are given; it keeps the tool choice
it was bound with): the behaviour on the real model is tested in
tests/cluster/test_agents_sdk.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import Field

from runtime.agents import guidance
from runtime.agents.definitions import build_context, build_graph
from runtime.config.agents import AgentSpec

RULES = {"calculator": r"\d\s*[-+*/]\s*\d", "clock": r"\b(time|date)\b"}


class Recorder(BaseChatModel):
    """Stand-in model: answers ``replies`` in turn, keeps the tool choice of each call."""

    replies: list[AIMessage]
    choices: list[Any] = Field(default_factory=list)
    bound: Any = None

    @property
    def _llm_type(self) -> str:
        return "recorder"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.model_copy(update={"bound": tool_choice})

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.choices.append(self.bound)  # shared list: the copies append to the original's
        reply = self.replies[len(self.choices) - 1]
        return ChatResult(generations=[ChatGeneration(message=reply)])


def _assistant(model: BaseChatModel, call_when: Any) -> Any:
    spec = AgentSpec.model_validate(
        {
            "name": "assistant",
            "factory": "runtime.agents.examples:assistant",
            "tools": ["runtime.agents.tools:calculator", "runtime.agents.tools:clock"],
            "llm": {"model": "m"},
            "options": {"call_when": call_when},
        }
    )
    return build_graph(build_context(spec, model, InMemorySaver()))


def _turn(graph: Any, text: str) -> list[BaseMessage]:
    state = graph.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": "t"}})
    return list(state["messages"])


def test_a_matching_message_gets_that_call_then_the_model_answers_by_itself() -> None:
    call = {"name": "calculator", "args": {"expression": "3 * 4"}, "id": "c1"}
    model = Recorder(replies=[AIMessage("", tool_calls=[call]), AIMessage("3 * 4 = 12.")])
    kept = _turn(_assistant(model, RULES), "What is 3 * 4?")
    assert model.choices == ["calculator", None]  # forced first; the answer left free
    assert [type(m) for m in kept] == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert kept[2].content == "12"  # the real calculator ran


@pytest.mark.parametrize(
    ("text", "choice"),
    [("What time is it?", "clock"), ("What time is 3 + 4?", "calculator"), ("Hi.", None)],
)
def test_the_first_matching_rule_in_order_or_none(text: str, choice: str | None) -> None:
    model = Recorder(replies=[AIMessage("hi")] * 2)
    _turn(_assistant(model, RULES), text)
    assert model.choices == [choice]


def test_the_async_path_forces_the_call_too() -> None:
    """The runtime runs turns with ``astream``: the middleware's async hook."""
    call = {"name": "clock", "args": {}, "id": "c1"}
    model = Recorder(replies=[AIMessage("", tool_calls=[call]), AIMessage("It is now.")])
    graph = _assistant(model, RULES)
    config = {"configurable": {"thread_id": "t"}}
    asyncio.run(graph.ainvoke({"messages": [HumanMessage("What time is it?")]}, config))
    assert model.choices == ["clock", None]


def test_no_rules_leave_every_choice_to_the_model() -> None:
    model = Recorder(replies=[AIMessage("hi")])
    _turn(_assistant(model, None), "What is 3 * 4?")
    assert model.choices == [None]


def test_a_pattern_that_backtracks_on_a_hostile_message_is_cut_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Exponential backtracking (no match to short-cut it): without the time limit
    this search does not end."""
    rules = guidance.parse_call_when({"calculator": r"(x+x+)+y"}, ["calculator"])
    started = time.monotonic()
    assert guidance.tool_to_call(rules, "x" * 1000) is None
    assert time.monotonic() - started < 2
    assert "ran out of time" in caplog.text and "xxx" not in caplog.text


def test_only_the_beginning_of_a_message_is_matched() -> None:
    rules = guidance.parse_call_when(RULES, ["calculator", "clock"])
    assert guidance.tool_to_call(rules, "hi " * 1000 + "3 + 4") is None
    assert guidance.tool_to_call(rules, "3 + 4 " + "hi " * 1000) == "calculator"


@pytest.mark.parametrize(
    ("call_when", "error"),
    [
        ({"shell": "x"}, "'shell' is not one of"),
        (["calculator"], "must map tool names"),
        ({"calculator": "("}, "options.call_when.calculator: missing \\)"),
        ({"calculator": ""}, "1 to 1000 characters"),
        ({"calculator": "x" * 1001}, "1 to 1000 characters"),
    ],
)
def test_bad_rules_are_refused_with_why(call_when: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        guidance.parse_call_when(call_when, ["calculator"])
