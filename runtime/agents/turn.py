"""One turn of a session: the agent's graph run under its budgets, as run events.

:func:`execute` runs the graph from the session's last checkpoint (repairing tool
calls a previous turn left unanswered) and returns the turn's outcome: a ``final``
event with the result, or an ``error`` event (cancelled, over a budget, failed). Its
other events go to the turn's queue as they happen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import LLMResult

from runtime.agents import outcomes
from runtime.agents.events import Transcript
from runtime.agents.metrics import AgentMetrics, StageTimer
from runtime.agents.protocol import RunEvent, Usage
from runtime.agents.repair import repair
from runtime.config.agents import AgentSpec
from runtime.errors import BudgetExceededError, RunCancelledError


@dataclass
class Agent:
    spec: AgentSpec
    graph: Any


@dataclass
class Turn:
    run_id: str
    session_id: str
    agent: str = ""
    tenant: str = ""
    key: str = ""  # the session's row (store.session_key)
    thread_id: str = ""  # the session's LangGraph thread
    events: asyncio.Queue[RunEvent | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    reason: str | None = None
    finished: bool = False  # past the graph: releasing the lease, cancels come too late
    lease_lost: bool = False  # another turn may hold the session: write nothing more
    stopping: bool = False  # its replica is stopping: the turn ends retryable
    idem: str | None = None  # the client's idempotency key of this turn
    resume: bool = False  # an earlier run of this turn died: continue what it wrote

    final: bool = False  # cancelled on purpose (client, newer message, deletion): a retry
    # with the turn's key gets the cancellation, it does not resume the run

    def cancel(self, reason: str, final: bool = False) -> None:
        if self.task is not None and not self.task.done() and not self.finished:
            self.reason = self.reason or reason
            self.final = self.final or final
            self.task.cancel()


class TokenBudget(AsyncCallbackHandler):
    """Counts every LLM call's tokens in a run, whatever node makes it."""

    raise_error = True

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.usage = Usage()

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for gen in generations:
                meta = getattr(getattr(gen, "message", None), "usage_metadata", None)
                if meta:
                    self.usage = Usage(
                        input_tokens=self.usage.input_tokens + meta["input_tokens"],
                        output_tokens=self.usage.output_tokens + meta["output_tokens"],
                    )
        if self.usage.total_tokens > self.limit:
            raise BudgetExceededError(
                f"the run used {self.usage.total_tokens} tokens, over its budget of {self.limit}"
            )


@dataclass
class Execution:
    """What a turn did: its outcome event, and the figures its metrics report."""

    outcome: RunEvent
    transcript: Transcript
    tokens: TokenBudget
    elapsed_s: float


async def execute(
    agent: Agent, turn: Turn, text: str, stream_tokens: bool, metrics: AgentMetrics
) -> Execution:
    budgets = agent.spec.budgets
    started = time.monotonic()
    tokens = TokenBudget(budgets.max_tokens)
    transcript = Transcript(turn.run_id, turn.events.put_nowait)
    config: dict[str, Any] = {
        "configurable": {"thread_id": turn.thread_id},
        "recursion_limit": budgets.max_steps,
        "callbacks": [tokens, StageTimer(metrics, agent.spec.name)],
    }
    try:
        async with asyncio.timeout(budgets.max_seconds):
            inputs = await _inputs(agent, turn, text, config)
            modes = ["updates", "messages"] if stream_tokens else ["updates"]
            # Durability "sync": each step is in the store before the next starts, so a
            # replica that dies loses at most the step it was running.
            stream = agent.graph.astream(inputs, config, stream_mode=modes, durability="sync")
            async for mode, chunk in stream:
                transcript.add(mode, chunk)
            if inputs is None and not transcript.answer:  # resumed: steps replayed from
                transcript.answer = await _answer(agent, turn, config)  # writes not streamed
        elapsed = time.monotonic() - started
        result = transcript.result(turn.session_id, tokens.usage, elapsed)
        outcome = RunEvent(type="final", run_id=turn.run_id, result=result)
    except (asyncio.CancelledError, Exception) as exc:
        failure = outcomes.failure(exc, budgets, turn.reason, turn.lease_lost, turn.stopping)
        outcome = outcomes.error_event(turn.run_id, failure)
    return Execution(outcome, transcript, tokens, time.monotonic() - started)


def input_id(idem: str) -> str:
    """The id of the user message of a turn sent with idempotency key ``idem``."""
    return f"turn-{idem}"


def _after_input(state: Any, idem: str) -> list[Any] | None:
    """The thread's messages after the turn's own (None: the thread has not got it)."""
    messages = list((state.values or {}).get("messages", []))
    ids = [getattr(m, "id", None) for m in messages]
    return messages[ids.index(input_id(idem)) + 1 :] if input_id(idem) in ids else None


async def _inputs(
    agent: Agent, turn: Turn, text: str, config: dict[str, Any]
) -> dict[str, Any] | None:
    """The graph's input: the user's message after results for tool calls a previous
    turn left unanswered; or, when an earlier run of this same turn (its key) wrote the
    message already, None: the graph continues from its last checkpoint (steps it had
    not finished run again: at least once; a run that had finished does nothing more, and
    its answer is read from the thread). A turn whose
    message is no longer the thread's last is not resumed (RunCancelledError)."""
    message = HumanMessage(text, id=input_id(turn.idem) if turn.idem else None)
    state = await agent.graph.aget_state(config)
    after = _after_input(state, turn.idem) if turn.idem else None
    if after is not None:
        if any(isinstance(m, HumanMessage) for m in after):
            turn.final = True  # every retry gets this answer
            raise RunCancelledError(
                "later turns have run since this turn was cut off; it is not resumed"
            )
        # Always continue, whatever `state.next` says: a finished run's graph does
        # nothing more, and one killed between a step's saved writes and its checkpoint
        # (LangGraph saves the writes first) has an empty `next` mid-turn: continuing
        # applies those writes, checkpoints them and runs the steps left.
        return None
    checkpointer = agent.graph.checkpointer  # None: a graph compiled without one
    saved = await checkpointer.aget_tuple(config) if checkpointer else None
    return {"messages": [*repair(saved), message]}


async def _answer(agent: Agent, turn: Turn, config: dict[str, Any]) -> str:
    """The last answer after the turn's message in the thread (a resumed run's steps
    that LangGraph applied from saved writes are not streamed again)."""
    assert turn.idem is not None
    after = _after_input(await agent.graph.aget_state(config), turn.idem) or []
    answers = [m for m in after if isinstance(m, AIMessage) and not m.tool_calls]
    return answers[-1].text if answers else ""
