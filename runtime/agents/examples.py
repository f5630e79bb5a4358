"""Example agents, used by ``serve_configs/local.yaml``, the tests and the benchmark.

``assistant``: a LangChain ``create_agent`` tool-calling agent (calculator, clock).
``planner``: a two-node LangGraph graph that first writes a plan, then answers by it.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from runtime.agents.definitions import AgentContext


def assistant(ctx: AgentContext) -> Any:
    """A tool-calling agent: the model calls tools until it can answer.

    Serve config::

        - name: assistant
          factory: runtime.agents.examples:assistant
          tools: [runtime.agents.tools:calculator, runtime.agents.tools:clock]
          llm: {model: smollm2-135m-instruct}
          options:      # for a small model (runtime/agents/guidance.py)
            call_when: {calculator: <a pattern>, clock: <a pattern>}   # see local.yaml
    """
    from langchain.agents import create_agent

    from runtime.agents import guidance

    middleware = [*ctx.middleware, *guidance.middleware(ctx.options, [t.name for t in ctx.tools])]
    return create_agent(
        ctx.model,
        ctx.tools,
        system_prompt=ctx.system_prompt,
        middleware=middleware,
        checkpointer=ctx.checkpointer,
        name=ctx.spec.name,
    )


class PlanState(MessagesState):
    plan: str


PLAN_PROMPT = (
    "Write a short numbered plan, at most three steps, for answering the user's last "
    "message. Do not answer it yet."
)


def planner(ctx: AgentContext) -> Any:
    """Plan, then answer: two model calls per message, the plan kept in the state.

    Options: ``plan_prompt`` replaces the planning instruction.
    """
    plan_prompt = str(ctx.options.get("plan_prompt", PLAN_PROMPT))

    async def plan(state: PlanState) -> dict[str, Any]:
        reply = await ctx.model.ainvoke([SystemMessage(plan_prompt), *state["messages"]])
        return {"plan": reply.text}

    async def answer(state: PlanState) -> dict[str, Any]:
        prompt = f"{ctx.system_prompt}\n\nFollow this plan:\n{state['plan']}"
        reply = await ctx.model.ainvoke([SystemMessage(prompt), *state["messages"]])
        return {"messages": [AIMessage(content=reply.text, usage_metadata=reply.usage_metadata)]}

    graph = StateGraph(PlanState)
    graph.add_node("plan", plan)
    graph.add_node("answer", answer)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=ctx.checkpointer, name=ctx.spec.name)
