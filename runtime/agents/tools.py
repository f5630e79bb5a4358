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
_MAX_EXPONENT = 1000
_MAX_LENGTH = 500
#: The largest integer any step may produce, in bits (about 1,200 digits). Every step
#: is bounded before it runs, so an expression costs microseconds: one whose steps were
#: bounded only one by one, like ``((9**999)**999)**999``, would build a number of
#: hundreds of megabytes while holding the interpreter (and no time budget can stop a
#: running C function).
_MAX_BITS = 4096
_MAX_ROUND_DIGITS = 15


def _round(value: Any, digits: Any = None) -> Any:
    if digits is not None and (not isinstance(digits, int) or abs(digits) > _MAX_ROUND_DIGITS):
        raise ToolInputError(f"round() takes at most {_MAX_ROUND_DIGITS} digits")
    return round(value, digits)


_FUNCTIONS: dict[str, Any] = {"sqrt": math.sqrt, "abs": abs, "round": _round}


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_size(op: ast.operator, left: Any, right: Any) -> None:
    """Refuses a step whose integer result would exceed _MAX_BITS (floats overflow to
    an error by themselves)."""
    if isinstance(op, ast.Pow):
        if abs(right) > _MAX_EXPONENT:
            raise ToolInputError(f"exponents above {_MAX_EXPONENT} are not allowed")
        # A negative or float exponent gives a float (which overflows to an error).
        bits = _bits(left) * right if isinstance(right, int) and right > 0 else 0
    elif isinstance(op, ast.Mult):
        bits = _bits(left) + _bits(right)
    else:  # + - / // %: no larger than the operands, plus a bit
        bits = max(_bits(left), _bits(right)) + 1
    if bits > _MAX_BITS:
        raise ToolInputError(f"the result would have more than {_MAX_BITS} bits")


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
    try:
        value: float | int = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolInputError("division by zero") from None
    except (OverflowError, RecursionError):
        raise ToolInputError("the result is too large") from None
    except (TypeError, ValueError) as err:  # sqrt(-1), a complex power, round(1, 1.5)…
        raise ToolInputError(f"cannot compute this: {err}") from None
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        _check_size(node.op, left, right)
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        value = _FUNCTIONS[node.func.id](*(_eval(a) for a in node.args))
        if _bits(value) > _MAX_BITS:  # round(1e300) is an integer of 997 bits: fine
            raise ToolInputError(f"the result would have more than {_MAX_BITS} bits")
        return value
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
