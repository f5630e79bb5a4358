"""The example agents' tools: safe arithmetic, clock, and errors meant for the model."""

from __future__ import annotations

import pytest

from runtime.agents.tools import ToolInputError, calculator, clock, evaluate


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2+3", 5),
        ("(2 + 3) * 4", 20),
        ("7 // 2", 3),
        ("-2 ** 2", -4),
        ("sqrt(16)", 4.0),
        ("abs(-3.5)", 3.5),
        ("10 % 4", 2),
        ("2 ** -2", 0.25),
        ("round(2.567, 2)", 2.57),
        ("9 ** 999 % 10", 9),
        ("-" * 499 + "1", -1),
    ],
)
def test_evaluates(expression: str, value: float) -> None:
    assert evaluate(expression) == value


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "division by zero"),
        ("__import__('os')", "unsupported syntax"),
        ("open('x')", "unsupported syntax"),
        ("2 ** 10000", "exponents above"),
        ("2 +", "not an arithmetic expression"),
        ("1" * 501, "longer than 500"),
        ("'a' * 3", "unsupported syntax"),
        # Each step bounded, not only each exponent: these built numbers of hundreds of
        # megabytes while holding the interpreter (the turn's budget cannot stop that).
        ("((9**999)**999)**999", "more than 4096 bits"),
        ("((9**999)**999)**20", "more than 4096 bits"),
        ("(9**999) * (9**999)", "more than 4096 bits"),
        ("round(1, -1000000000)", "at most 15 digits"),
        ("10.0 ** 999", "too large"),
        ("sqrt(-1)", "cannot compute"),
        ("(9**999) / 0.0", "too large"),
    ],
)
def test_refuses(expression: str, message: str) -> None:
    with pytest.raises(ToolInputError, match=message):
        evaluate(expression)


def test_tools_as_langchain_tools() -> None:
    assert calculator.invoke({"expression": "6*7"}) == "42"
    assert calculator.invoke({"expression": "3/2"}) == "1.5"
    assert clock.invoke({"timezone": "UTC"}).endswith("+00:00")
    with pytest.raises(ToolInputError, match="unknown time zone"):
        clock.invoke({"timezone": "Mars/Olympus"})
