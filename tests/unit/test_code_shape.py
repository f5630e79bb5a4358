"""The shape of the code, checked: the request path has no loop, functions stay short.

No application calls back into one that calls it: the gateway calls the agents and
the models, the agents call the models, the models call nothing. In code: the agents,
the router and the LLM deployment never import the gateway, and the LLM deployment
imports neither the agents nor the router.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "runtime"


def _imports(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted((RUNTIME / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        found[str(path.relative_to(RUNTIME.parent))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("agents", ("runtime.gateway",)),
        ("routing", ("runtime.gateway", "runtime.agents")),
        ("llm", ("runtime.gateway", "runtime.agents", "runtime.routing")),
    ],
)
def test_no_application_calls_back_into_its_caller(
    package: str, forbidden: tuple[str, ...]
) -> None:
    bad = {
        module: sorted(n for n in names if n.startswith(forbidden))
        for module, names in _imports(package).items()
    }
    assert not {m: n for m, n in bad.items() if n}


def test_no_function_is_over_60_lines() -> None:
    long = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(RUNTIME.parent)}:{node.lineno} {node.name}")
    assert not long


def test_the_formatter_decides() -> None:
    """At most a few `# fmt: skip` markers in the project, each with its reason."""
    root = RUNTIME.parent
    marker = "# fmt" + ": skip"  # (spelled so that this file holds none)
    markers = [
        line
        for folder in ("runtime", "tests", "benchmarks", "scripts")
        for path in sorted((root / folder).rglob("*.py"))
        for line in path.read_text().splitlines()
        if marker in line
    ]
    assert len(markers) < 20
    assert all(line.split(marker, 1)[1].strip(" ()") for line in markers), markers
