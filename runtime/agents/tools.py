"""Tools of the example agents: a calculator and a clock.

A tool that raises does not crash the run: the runtime hands the error to the
model as the tool's result (``status="error"``), and the model can try again.
"""

from __future__ import annotations

import ast
import math
import operator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.tools import tool

_BINARY: dict[type[ast.operator], Any] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Any] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS: dict[str, Any] = {"sqrt": math.sqrt, "abs": abs, "round": round}
_MAX_EXPONENT = 1000
_MAX_LENGTH = 500


class ToolInputError(ValueError):
    """The tool's input cannot be used; the message says why."""


def evaluate(expression: str) -> float | int:
    """Evaluate arithmetic safely: numbers, + - * / // % **, parentheses, sqrt/abs/round."""
    if len(expression) > _MAX_LENGTH:
        raise ToolInputError(f"the expression is longer than {_MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ToolInputError("not an arithmetic expression") from None
    value: float | int = _eval(tree.body)
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolInputError(f"exponents above {_MAX_EXPONENT} are not allowed")
        try:
            return _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise ToolInputError("division by zero") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        return _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
    raise ToolInputError(f"unsupported syntax: {type(node).__name__}")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. "(2 + 3) * 4" or "sqrt(16)"."""
    value = evaluate(expression)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


@tool
def clock(timezone: str = "UTC") -> str:
    """The current date and time in an IANA time zone, e.g. "Europe/Paris"."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolInputError(f"unknown time zone {timezone!r}") from None
    return datetime.now(zone).isoformat(timespec="seconds")
