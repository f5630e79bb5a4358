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


def test_the_probe_asks_one_token_with_its_log_probabilities() -> None:
    body = {"messages": [], "tools": TOOLS, "stream": True, "max_tokens": 500, "n": 3}
    probe = tool_choice.probe(body)
    assert probe["max_tokens"] == 1 and probe["n"] == 1 and probe["logprobs"] is True
    assert "stream" not in probe and probe["top_logprobs"] == 20 and probe["tools"] == TOOLS


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
                },
                "required": ["x", "y"],
            },
        }
    ],
    "answer": [{"math.hypot": {"x": [4], "y": [5], "z": ["", 0], "unit": ["cm", ""]}}],
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
