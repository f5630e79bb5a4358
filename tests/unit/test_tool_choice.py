"""The `decide` step of ``tool_choice: auto`` (runtime/llm/tool_choice.py) and the
tool-calling benchmark's BFCL checker (benchmarks/bfcl.py)."""

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest

from runtime.config import LLMAppConfig
from runtime.llm import tool_choice

_spec = importlib.util.spec_from_file_location(
    "bfcl", Path(__file__).parents[2] / "benchmarks" / "bfcl.py"
)
assert _spec and _spec.loader
bfcl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bfcl)

TOOLS = [{"type": "function", "function": {"name": "calculator", "parameters": {}}}]


def _reply(tops: dict[str, float]) -> dict[str, Any]:
    top = [{"token": t, "logprob": math.log(p)} for t, p in tops.items()]
    return {"choices": [{"logprobs": {"content": [{"token": "x", "top_logprobs": top}]}}]}


def test_it_decides_only_for_auto_right_after_a_users_message() -> None:
    user = [{"role": "user", "content": "17 * 23?"}]
    assert tool_choice.applies({"messages": user, "tools": TOOLS})
    assert tool_choice.applies({"messages": user, "tools": TOOLS, "tool_choice": "auto"})
    assert not tool_choice.applies({"messages": user})
    assert not tool_choice.applies({"messages": user, "tools": TOOLS, "tool_choice": "none"})
    after_tool = [*user, {"role": "tool", "content": "391", "tool_call_id": "c"}]
    assert not tool_choice.applies({"messages": after_tool, "tools": TOOLS})
    for hostile in ([], "hi", [["user"]], None):
        assert not tool_choice.applies({"messages": hostile, "tools": TOOLS})


def test_it_does_not_decide_over_another_constraint_or_a_continued_message() -> None:
    user = [{"role": "user", "content": "17 * 23?"}]
    base = {"messages": user, "tools": TOOLS}
    for extra in (
        {"response_format": {"type": "json_object"}},
        {"structured_outputs": {"choice": ["a", "b"]}},
        {"continue_final_message": True},
        {"add_generation_prompt": False},
    ):
        assert not tool_choice.applies({**base, **extra}), extra


def test_the_probe_asks_one_token_with_its_log_probabilities() -> None:
    body = {"messages": [], "tools": TOOLS, "stream": True, "max_tokens": 500, "n": 3}
    body |= {"min_tokens": 50, "prompt_logprobs": 5, "stream_options": {}}
    probe = tool_choice.probe(body)
    assert probe["max_tokens"] == 1 and probe["n"] == 1 and probe["logprobs"] is True
    assert "stream" not in probe and probe["top_logprobs"] == 20 and probe["tools"] == TOOLS
    assert not {"min_tokens", "prompt_logprobs", "stream_options"} & set(probe)
    assert tool_choice.probe(body, top=5)["top_logprobs"] == 5  # --max-logprobs 5


def test_the_call_probability_counts_tokens_that_begin_the_marker() -> None:
    p = tool_choice.call_probability(_reply({"<": 0.3, "<tool": 0.1, "The": 0.5, "<b": 0.1}))
    assert p == pytest.approx(0.4)
    assert tool_choice.call_probability({"choices": [{"message": {}}]}) == 0.0
    body = {"messages": [], "tools": TOOLS}
    assert tool_choice.decided(body, 0.4, 0.05)["tool_choice"] == "required"
    assert tool_choice.decided(body, 0.01, 0.05) is body


def test_the_config_switch_defaults_to_the_models_own_choice() -> None:
    config = LLMAppConfig.model_validate({"model": {"source": "tiny-random"}})
    assert config.tool_choice.auto == "model"
    with pytest.raises(ValueError, match="tool_call_parser: hermes"):
        LLMAppConfig.model_validate(
            {"model": {"source": "tiny-random"}, "tool_choice": {"auto": "decide"}}
        )
    with pytest.raises(ValueError, match="call_threshold"):
        LLMAppConfig.model_validate(
            {"model": {"source": "tiny-random"}, "tool_choice": {"call_threshold": 0}}
        )


CASE = {
    "function": [
        {
            "name": "math.hypot",
            "parameters": {
                "type": "dict",
                "properties": {
                    "x": {"type": "integer"},
                    "y": {"type": "integer"},
                    "z": {"type": "integer"},
                    "unit": {"type": "string"},
                    "scale": {"type": "float"},
                    "sizes": {"type": "array", "items": {"type": "integer"}},
                },
                "required": ["x", "y"],
            },
        }
    ],
    "answer": [
        {
            "math.hypot": {
                "x": [4],
                "y": [5],
                "z": ["", 0],
                "unit": ["cm", ""],
                "sizes": [[1, 2], ""],
            }
        }
    ],
}


@pytest.mark.parametrize(
    ("calls", "why"),
    [
        ([("math_hypot", {"x": 4, "y": 5})], None),
        ([("math_hypot", {"x": 4, "y": 5, "z": 0, "unit": " CM"})], None),
        ([], "0 calls, expected 1"),
        ([("math_hypot", {"x": 4, "y": 5})] * 2, "2 calls, expected 1"),
        ([("hypot", {"x": 4, "y": 5})], "called hypot, expected math_hypot"),
        ([("math_hypot", {"x": 4})], "missing required y"),
        ([("math_hypot", {"x": 4.0, "y": 5})], "wrong value for x"),
        ([("math_hypot", {"x": 4, "y": 6})], "wrong value for y"),
        ([("math_hypot", {"x": 4, "y": 5, "w": 1})], "unexpected parameter w"),
        ([("math_hypot", {"x": 4, "y": 5, "scale": 1})], "unexpected parameter scale"),
        ([("math_hypot", None)], "arguments are not an object"),
        ([("math_hypot", {"x": 4, "y": 5, "sizes": [1, 2]})], None),
        ([("math_hypot", {"x": 4, "y": 5, "sizes": [1.0, 2]})], "wrong value for sizes"),
    ],
)
def test_the_checker_follows_bfcls_rules(calls: list[Any], why: str | None) -> None:
    assert bfcl.check(CASE, calls, "simple") == why


def test_irrelevance_is_right_only_without_a_call() -> None:
    assert bfcl.check(CASE, [], "irrelevance") is None
    assert bfcl.check(CASE, [("math_hypot", {})], "irrelevance") is not None


def test_bfcl_types_become_json_schema() -> None:
    (tool,) = bfcl.tools(CASE)
    params = tool["function"]["parameters"]
    assert tool["function"]["name"] == "math_hypot"
    assert params["type"] == "object" and params["properties"]["scale"]["type"] == "number"


def _server(replies: list[Any]) -> tuple[Any, list[dict[str, Any]]]:
    """An LLMServer with its engine call replaced: each call takes the next reply (an
    exception is raised). Everything else of `_choose_tools` is the replica's own."""
    import types

    from runtime.llm.server import LLMServer

    cls = LLMServer.func_or_class
    server = cls.__new__(cls)
    server._config = LLMAppConfig.model_validate(
        {
            "model": {"source": "tiny-random"},
            "engine": {"tool_call_parser": "hermes"},
            "tool_choice": {"auto": "decide", "call_threshold": 0.1},
        }
    )
    server._args = types.SimpleNamespace(max_logprobs=5)
    server._app = types.SimpleNamespace(
        state=types.SimpleNamespace(
            openai_serving_chat=types.SimpleNamespace(create_chat_completion=None)
        )
    )
    sent: list[dict[str, Any]] = []

    async def complete(handler: Any, request_cls: Any, body: dict[str, Any]) -> Any:
        sent.append(body)
        reply = replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    server._complete = complete
    return server, sent


def test_the_replica_sends_a_leaning_request_on_as_required() -> None:
    import asyncio

    body = {"messages": [{"role": "user", "content": "17 * 23?"}], "tools": TOOLS}
    server, sent = _server([_reply({"<": 0.5, "The": 0.5})])
    decided = asyncio.run(server._choose_tools(body))
    assert decided["tool_choice"] == "required" and sent[0]["top_logprobs"] == 5
    server, _ = _server([_reply({"<": 0.01, "The": 0.99})])
    assert asyncio.run(server._choose_tools(body)) is body


def test_a_failed_probe_leaves_the_request_as_it_was() -> None:
    import asyncio

    from runtime.errors import LLMError, ModelUnavailableError

    body = {"messages": [{"role": "user", "content": "hi"}], "tools": TOOLS}
    server, _ = _server([LLMError("prompt too long")])
    assert asyncio.run(server._choose_tools(body)) is body
    server, _ = _server([ModelUnavailableError("restarting")])
    with pytest.raises(ModelUnavailableError):  # retryable: the caller's retry decides
        asyncio.run(server._choose_tools(body))
