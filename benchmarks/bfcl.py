"""Berkeley Function Calling Leaderboard data, as OpenAI chat requests, and a checker.

The data come from the ``bfcl-eval`` wheel (``make bench-tools`` installs it without
its dependencies: they pin numpy 1.26 and a dozen provider SDKs, which would break
vLLM's environment, and BFCL's own checker imports them all through its model
registry). The checker here follows the rules of BFCL's AST checker, re-implemented:

- ``simple`` and ``multiple``: exactly one call; its name the expected one; every
  required parameter given; no parameter the function does not declare or the answer
  does not list; each value among the listed answers (an integer where an integer is
  declared, a number where a float is, also for an array's items; strings compared
  without case, spaces and ``,./-_*^``; lists and dicts element by element, a dict's
  strings normalised at every depth, slightly more lenient than BFCL, which does so at
  the top level only); a listed parameter left out only
  where ``""`` is among its answers (optional).
- ``irrelevance``: correct when no call is made.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

CATEGORIES = {
    "simple": "BFCL_v4_simple_python.json",
    "multiple": "BFCL_v4_multiple.json",
    "irrelevance": "BFCL_v4_irrelevance.json",
    "live_simple": "BFCL_v4_live_simple.json",
    "live_irrelevance": "BFCL_v4_live_irrelevance.json",
}
_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


def data_dir() -> Path:
    """The installed ``bfcl_eval`` package's data folder (its ``__init__`` is not run)."""
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bfcl-eval is not installed: run `make bench-tools`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load(category: str) -> list[dict[str, Any]]:
    """The category's cases, each with its ``answer`` (None for irrelevance)."""
    name = CATEGORIES[category]
    cases = [json.loads(line) for line in (data_dir() / name).read_text().splitlines()]
    answers_file = data_dir() / "possible_answer" / name
    if answers_file.is_file():
        answers = {
            a["id"]: a["ground_truth"]
            for a in map(json.loads, answers_file.read_text().splitlines())
        }
        for case in cases:
            case["answer"] = answers[case["id"]]
    return cases


def openai_name(name: str) -> str:
    """OpenAI function names allow ``[A-Za-z0-9_-]`` only (BFCL's ``math.hypot``)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _schema(v) for k, v in node.items() if k not in ("optional",)}
    if isinstance(node.get("type"), str):
        out["type"] = _TYPES.get(node["type"], node["type"])
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {}
    return out


def tools(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's functions as OpenAI tools (BFCL's types as JSON Schema's)."""
    return [
        {
            "type": "function",
            "function": {
                "name": openai_name(f["name"]),
                "description": f.get("description", ""),
                "parameters": _schema(f["parameters"]),
            },
        }
        for f in case["function"]
    ]


def messages(case: dict[str, Any]) -> list[dict[str, Any]]:
    return list(case["question"][0])


def _norm(text: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _same(value: Any, allowed: Any, kind: str | None, items: str | None = None) -> bool:
    """``value`` matches one allowed answer, by BFCL's rules for the declared ``kind``
    (``items``: an array's declared item type)."""
    if kind == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
        return False
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return False
    if kind == "boolean" and not isinstance(value, bool):
        return False
    if isinstance(allowed, str):
        return isinstance(value, str) and _norm(value) == _norm(allowed)
    if isinstance(allowed, list):
        return (
            isinstance(value, list)
            and len(value) == len(allowed)
            and all(_same(v, a, items) for v, a in zip(value, allowed, strict=True))
        )
    if isinstance(allowed, dict):
        return isinstance(value, dict) and _dict_ok(value, allowed)
    if isinstance(allowed, bool) or isinstance(value, bool):
        return value is allowed
    if isinstance(allowed, int | float):
        return isinstance(value, int | float) and float(value) == float(allowed)
    return bool(value == allowed)


def _dict_ok(value: dict[str, Any], allowed: dict[str, Any]) -> bool:
    for key, options in allowed.items():
        options = options if isinstance(options, list) else [options]
        if key not in value:
            if "" not in options:
                return False
        elif not any(_same(value[key], o, None) for o in options if o != ""):
            return False
    return set(value) <= set(allowed)


def check(case: dict[str, Any], calls: list[tuple[str, Any]], category: str) -> str | None:
    """None when ``calls`` (name, arguments) answer ``case`` correctly; else why not."""
    if "irrelevance" in category:
        return None if not calls else "called a function where none fits"
    if len(calls) != 1:
        return f"{len(calls)} calls, expected 1"
    name, args = calls[0]
    expected = case["answer"][0]
    ((want, answers),) = expected.items()
    if name != openai_name(want):
        return f"called {name}, expected {openai_name(want)}"
    if not isinstance(args, dict):
        return "arguments are not an object"
    doc = next(f for f in case["function"] if f["name"] == want)["parameters"]
    props = doc.get("properties", {})
    for param in doc.get("required", []):
        if param not in args:
            return f"missing required {param}"
    for param, value in args.items():
        if param not in props or param not in answers:
            return f"unexpected parameter {param}"
        kind = props[param].get("type")
        items = (props[param].get("items") or {}).get("type")
        if not any(_same(value, a, kind, items) for a in answers[param] if a != ""):
            return f"wrong value for {param}"
    for param, options in answers.items():
        if param not in args and "" not in options:
            return f"missing {param}"
    return None
