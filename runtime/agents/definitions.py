"""How agents are defined: a factory gets an :class:`AgentContext`, returns a compiled graph.

The graph's state must have a ``messages`` list (LangGraph's ``MessagesState`` or
``create_agent``'s state); the runtime sends each user message as a
``HumanMessage`` and compiles nothing itself: the factory passes
``ctx.checkpointer`` to ``create_agent`` or ``StateGraph.compile``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from langgraph.types import Checkpointer

from runtime.config.agents import AgentSpec


def tool_error_to_model(exc: Exception, request: Any) -> str:
    """A failed tool call becomes the tool's result, so the model can react to it.

    Only the exception's type and message reach the model; tools should raise
    messages meant for it (see ``runtime.agents.tools.ToolInputError``).
    """
    return f"Error: {type(exc).__name__}: {exc}"


@dataclass
class AgentContext:
    """What a factory gets to build its graph."""

    spec: AgentSpec
    model: BaseChatModel
    tools: list[BaseTool]
    checkpointer: Checkpointer
    #: LangChain ``create_agent`` middleware the runtime asks every agent to use:
    #: tool errors go back to the model instead of ending the run.
    middleware: list[Any] = field(default_factory=list)

    @property
    def system_prompt(self) -> str:
        return self.spec.system_prompt

    @property
    def options(self) -> dict[str, Any]:
        return self.spec.options


def load_attribute(path: str, what: str) -> Any:
    """Import ``module:attribute``; a clear error names the path when it fails."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"{what} {path!r}: cannot import module {module_name!r} ({err})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"{what} {path!r}: module {module_name!r} has no {attr!r}") from None


def build_context(
    spec: AgentSpec, model: BaseChatModel, checkpointer: Checkpointer
) -> AgentContext:
    from langchain.agents.middleware import ToolErrorMiddleware

    tools = []
    for path in spec.tools:
        tool = load_attribute(path, "tool")
        if not isinstance(tool, BaseTool):
            raise ValueError(f"tool {path!r} is not a LangChain tool (decorate it with @tool)")
        tools.append(tool)
    return AgentContext(
        spec=spec,
        model=model,
        tools=tools,
        checkpointer=checkpointer,
        middleware=[ToolErrorMiddleware(tool_error_to_model)],
    )


def build_graph(ctx: AgentContext) -> Any:
    factory: Callable[[AgentContext], Any] = load_attribute(ctx.spec.factory, "agent factory")
    if not callable(factory):
        raise ValueError(f"agent factory {ctx.spec.factory!r} is not callable")
    graph = factory(ctx)
    if not hasattr(graph, "astream") or not hasattr(graph, "aget_state"):
        raise ValueError(
            f"agent factory {ctx.spec.factory!r} returned {type(graph).__name__}, "
            "not a compiled LangGraph graph"
        )
    return graph
