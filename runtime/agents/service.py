"""Sessions and runs of the agents of one application, independent of Serve.

``AgentService`` is what each ``AgentServer`` replica runs; tests and benchmarks
also run it in-process. One instance hosts any number of sessions: a session is a
row in the store plus a LangGraph thread in the checkpointer, so any replica can
serve any session, and nothing about it lives only in a replica's memory.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphRecursionError

from runtime.agents.chat_model import UsageLabels, chat_model, current_tenant, current_usage
from runtime.agents.definitions import build_context, build_graph
from runtime.agents.errors import (
    AgentError,
    AgentNotFoundError,
    BudgetExceededError,
    InvalidInputError,
    RunCancelledError,
    RunFailedError,
    SessionBusyError,
    SessionExistsError,
    SessionNotFoundError,
)
from runtime.agents.metrics import AgentMetrics, StageTimer, TimedCheckpointer
from runtime.agents.protocol import (
    Message,
    RunEvent,
    RunResult,
    SessionInfo,
    ToolCall,
    ToolResult,
    Usage,
)
from runtime.agents.store import SessionRow, SessionStore, open_store
from runtime.config.agents import AgentAppConfig, AgentSpec, Budgets, LLMRef
from runtime.telemetry import logs, tracing
from runtime.telemetry.redact import content, content_allowed

logger = logging.getLogger("ray.serve")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")
INTERRUPTED_TOOL = "Error: the turn ended before this tool call finished."


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise InvalidInputError(
            f"{what} must be 1-128 characters of letters, digits, '_', '.' or '-'"
        )
    return value


def check_tenant(tenant: str) -> str:
    """A well-formed tenant id, which then names the tenant of this request's logs."""
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise InvalidInputError("the tenant id is malformed")
    logs.bind_tenant(tenant)
    return tenant


@dataclass
class _Agent:
    spec: AgentSpec
    graph: Any


@dataclass
class _Turn:
    run_id: str
    session_id: str
    agent: str = ""
    tenant: str = ""
    events: asyncio.Queue[RunEvent | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    reason: str | None = None
    finished: bool = False  # past the graph: releasing the lease, cancels come too late

    def cancel(self, reason: str) -> None:
        if self.task is not None and not self.task.done() and not self.finished:
            self.reason = self.reason or reason
            self.task.cancel()


class _TokenBudget(AsyncCallbackHandler):
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


class AgentService:
    """Sessions and runs of an application's agents.

    Example (in-process, SQLite store, scripted stand-in model)::

        service = await AgentService.open(AgentAppConfig.model_validate(args))
        info = await service.create_session("tenant-a", "assistant")
        result = await service.invoke("tenant-a", "assistant", info.id, "What is 2+3?")
    """

    def __init__(
        self,
        config: AgentAppConfig,
        store: SessionStore,
        agents: dict[str, _Agent],
        metrics: AgentMetrics | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self._agents = agents
        self._turns: dict[str, _Turn] = {}
        self._queued = 0  # turns waiting in _acquire for a busy session
        self._heartbeat: asyncio.Task[None] | None = None
        self.metrics = metrics or AgentMetrics.for_replica()

    @classmethod
    async def open(
        cls,
        config: AgentAppConfig,
        model_factory: Callable[[LLMRef], BaseChatModel] = chat_model,
    ) -> AgentService:
        store = await open_store(config.sessions.store)
        metrics = AgentMetrics.for_replica()
        try:
            agents = {}
            for spec in config.agents:
                checkpointer = TimedCheckpointer(store.checkpointer, metrics, spec.name)
                ctx = build_context(spec, model_factory(spec.llm), checkpointer)
                agents[spec.name] = _Agent(spec, build_graph(ctx))
        except Exception:
            await store.close()
            raise
        return cls(config, store, agents, metrics)

    async def close(self) -> None:
        for turn in list(self._turns.values()):
            turn.cancel("the replica is shutting down")
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self.store.close()

    def _count_running(self, agent: str) -> None:
        self.metrics.set_running(agent, sum(t.agent == agent for t in self._turns.values()))

    # -- sessions ----------------------------------------------------------------

    def load(self) -> tuple[int, int]:
        """Turns running here, and turns waiting here for a busy session."""
        return len(self._turns), self._queued

    def agent_names(self) -> list[str]:
        return list(self._agents)

    def _agent(self, name: str) -> _Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise AgentNotFoundError(f"no agent named {name!r} in this application")
        return agent

    def _info(self, row: SessionRow) -> SessionInfo:
        return SessionInfo(
            id=row.id,
            agent=row.agent,
            created_at=row.created_at,
            updated_at=row.updated_at,
            turns=row.turns,
            running=row.running(time.time()),
        )

    async def _owned(self, tenant: str, agent: str, session_id: str) -> SessionRow:
        check_tenant(tenant)
        self._agent(agent)
        check_id(session_id, "the session id")
        row = await self.store.get(session_id)
        # Another tenant's session, or another agent's, answers exactly like a missing one.
        if row is None or row.tenant != tenant or row.agent != agent:
            raise SessionNotFoundError(f"no session {session_id!r} for agent {agent!r}")
        return row

    async def create_session(
        self, tenant: str, agent: str, session_id: str | None = None
    ) -> SessionInfo:
        check_tenant(tenant)
        self._agent(agent)
        sid = uuid.uuid4().hex if session_id is None else check_id(session_id, "the session id")
        row = await self.store.create(sid, agent, tenant)
        if row is None:
            raise SessionExistsError(f"a session with id {sid!r} exists already")
        return self._info(row)

    async def get_session(self, tenant: str, agent: str, session_id: str) -> SessionInfo:
        return self._info(await self._owned(tenant, agent, session_id))

    async def delete_session(self, tenant: str, agent: str, session_id: str) -> None:
        """Delete the session and its checkpoints; a running turn is cancelled first."""
        await self._owned(tenant, agent, session_id)
        await self._cancel(session_id, "the session was deleted")
        local = [t.task for t in self._turns.values() if t.session_id == session_id and t.task]
        if local:  # let a turn cancelled here stop writing checkpoints first
            await asyncio.wait(local, timeout=5)
        await self.store.delete(session_id)
        await self.store.checkpointer.adelete_thread(session_id)

    async def history(self, tenant: str, agent: str, session_id: str) -> list[Message]:
        await self._owned(tenant, agent, session_id)
        graph = self._agents[agent].graph
        state = await graph.aget_state({"configurable": {"thread_id": session_id}})
        messages = (state.values or {}).get("messages", [])
        return [m for m in map(_message, messages) if m is not None]

    async def cancel(self, tenant: str, agent: str, session_id: str) -> bool:
        """Cancel the session's running turn, on whichever replica runs it."""
        await self._owned(tenant, agent, session_id)
        return await self._cancel(session_id, "the run was cancelled by the client")

    async def _cancel(self, session_id: str, reason: str) -> bool:
        local = [t for t in self._turns.values() if t.session_id == session_id]
        for turn in local:
            turn.cancel(reason)
        remote = await self.store.request_cancel(session_id)
        return bool(local) or remote is not None

    # -- runs ------------------------------------------------------------------

    async def invoke(self, tenant: str, agent: str, session_id: str, text: str) -> RunResult:
        """Run one turn to its end; its result, or the run's error raised."""
        turn = await self.start(tenant, agent, session_id, text, stream_tokens=False)
        async for event in self.events(turn):
            if event.type == "final" and event.result is not None:
                return event.result
            if event.type == "error" and event.error is not None:
                raise AgentError.from_body({"error": event.error}, 500)
        raise RunFailedError("the run ended without a result")

    async def stream(
        self, tenant: str, agent: str, session_id: str, text: str
    ) -> AsyncIterator[RunEvent]:
        """Run one turn, yielding its events; closing the stream cancels the run."""
        turn = await self.start(tenant, agent, session_id, text)
        async for event in self.events(turn):
            yield event

    async def start(
        self, tenant: str, agent: str, session_id: str, text: str, *, stream_tokens: bool = True
    ) -> _Turn:
        """Validate, take the session (by the agent's busy policy) and start the run."""
        entry = self._agent(agent)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the message must be a non-empty string")
        if len(text) > entry.spec.max_input_chars:
            raise InvalidInputError(
                f"the message has {len(text)} characters; this agent takes at most "
                f"{entry.spec.max_input_chars}"
            )
        await self._owned(tenant, agent, session_id)
        turn = _Turn(run_id=uuid.uuid4().hex, session_id=session_id, agent=agent, tenant=tenant)
        self._queued += 1
        try:
            await self._acquire(entry.spec, turn)
        finally:
            self._queued -= 1
        self._turns[turn.run_id] = turn
        self._count_running(agent)
        context = contextvars.copy_context()  # the run's LLM calls count for its tenant
        context.run(current_tenant.set, tenant)
        context.run(current_usage.set, UsageLabels(agent, entry.spec.scenario))
        turn.task = asyncio.create_task(
            self._execute(entry, turn, text, stream_tokens), context=context
        )
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew_leases())
        return turn

    async def events(self, turn: _Turn) -> AsyncIterator[RunEvent]:
        try:
            yield RunEvent(type="start", run_id=turn.run_id)
            while (event := await turn.events.get()) is not None:
                yield event
        finally:
            turn.cancel("the client stopped reading the run's events")

    async def _acquire(self, spec: AgentSpec, turn: _Turn) -> None:
        sessions = self.config.sessions
        if await self.store.acquire(turn.session_id, turn.run_id, sessions.lease_ttl_s):
            return
        if spec.busy == "reject":
            raise SessionBusyError(
                "the session's previous turn is still running; retry when it ends, or cancel it"
            )
        if spec.busy == "interrupt":
            await self._cancel(turn.session_id, "interrupted by a newer message")
        deadline = time.monotonic() + spec.budgets.max_seconds
        while not await self.store.acquire(turn.session_id, turn.run_id, sessions.lease_ttl_s):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionBusyError(
                    f"the session stayed busy for {spec.budgets.max_seconds:g} s, "
                    "this agent's time budget; the message was not run"
                )
            local = [
                t.task
                for t in self._turns.values()
                if t.session_id == turn.session_id and t.task is not None
            ]
            if local:  # the holder runs here: wake up as soon as it ends
                await asyncio.wait(local, timeout=min(left, sessions.lease_ttl_s))
            else:
                await asyncio.sleep(min(left, sessions.poll_interval_s))

    async def _renew_leases(self) -> None:
        sessions = self.config.sessions
        while self._turns:
            await asyncio.sleep(sessions.poll_interval_s)
            try:
                stop = await self.store.renew(list(self._turns), sessions.lease_ttl_s)
            except Exception as exc:  # keep renewing; the lease outlives a few misses
                logger.warning("renewing session leases failed: %s", type(exc).__name__)
                continue
            for run_id in stop:
                turn = self._turns.get(run_id)
                if turn is not None:
                    turn.cancel("the run was cancelled (by the client, or by a newer message)")

    async def _execute(self, agent: _Agent, turn: _Turn, text: str, stream_tokens: bool) -> None:
        """The turn in an ``agent.turn`` span (a child of the call that started it)."""
        attributes = {
            "runtime.agent": turn.agent,
            "runtime.tenant": turn.tenant,
            "runtime.scenario": agent.spec.scenario,
            "runtime.session": turn.session_id,
            "runtime.run": turn.run_id,
            "runtime.input.chars": len(text),
            "gen_ai.prompt": content(text) if content_allowed() else None,
        }
        with tracing.span("agent.turn", attributes):
            await self._turn(agent, turn, text, stream_tokens)

    async def _turn(self, agent: _Agent, turn: _Turn, text: str, stream_tokens: bool) -> None:
        budgets: Budgets = agent.spec.budgets
        started = time.monotonic()
        tokens = _TokenBudget(budgets.max_tokens)
        put = turn.events.put_nowait
        config: dict[str, Any] = {
            "configurable": {"thread_id": turn.session_id},
            "recursion_limit": budgets.max_steps,
            "callbacks": [tokens, StageTimer(self.metrics, agent.spec.name)],
        }
        steps, answer = 0, ""
        calls: list[ToolCall] = []
        results: list[ToolResult] = []
        try:
            async with asyncio.timeout(budgets.max_seconds):
                repair = await _repair(agent.graph, config)
                inputs = {"messages": [*repair, HumanMessage(text)]}
                modes = ["updates", "messages"] if stream_tokens else ["updates"]
                # Durability "sync": each step is in the store before the next starts, so
                # a replica that dies loses at most the step it was running.
                stream = agent.graph.astream(inputs, config, stream_mode=modes, durability="sync")
                async for mode, chunk in stream:
                    if mode == "messages":
                        message, meta = chunk
                        if isinstance(message, AIMessageChunk) and message.text:
                            node = meta.get("langgraph_node")
                            put(
                                RunEvent(
                                    type="token", run_id=turn.run_id, text=message.text, node=node
                                )
                            )
                        continue
                    for node, update in chunk.items():
                        if node.startswith("__"):
                            continue
                        steps += 1
                        for message in _update_messages(update):
                            if isinstance(message, AIMessage):
                                for c in message.tool_calls:
                                    call = ToolCall(
                                        id=c["id"] or "", name=c["name"], args=c["args"]
                                    )
                                    calls.append(call)
                                    put(
                                        RunEvent(
                                            type="tool_call",
                                            run_id=turn.run_id,
                                            tool_call=call,
                                            node=node,
                                        )
                                    )
                                if not message.tool_calls:
                                    answer = message.text
                            elif isinstance(message, ToolMessage):
                                result = ToolResult(
                                    id=message.tool_call_id,
                                    name=message.name or "",
                                    content=message.text,
                                    is_error=message.status == "error",
                                )
                                results.append(result)
                                put(
                                    RunEvent(
                                        type="tool_result",
                                        run_id=turn.run_id,
                                        tool_result=result,
                                        node=node,
                                    )
                                )
                        put(RunEvent(type="step", run_id=turn.run_id, node=node, index=steps))
            outcome = RunEvent(
                type="final",
                run_id=turn.run_id,
                result=RunResult(
                    session_id=turn.session_id,
                    run_id=turn.run_id,
                    answer=answer,
                    steps=steps,
                    usage=tokens.usage,
                    tool_calls=calls,
                    tool_results=results,
                    elapsed_s=time.monotonic() - started,
                ),
            )
        except asyncio.CancelledError:
            reason = turn.reason or "the run was cancelled"
            outcome = _error(turn, RunCancelledError(f"{reason}; completed steps are kept"))
        except TimeoutError:
            outcome = _error(
                turn,
                BudgetExceededError(
                    f"the run took longer than its budget of {budgets.max_seconds:g} s; "
                    "completed steps are kept"
                ),
            )
        except GraphRecursionError:
            outcome = _error(
                turn,
                BudgetExceededError(
                    f"the run needed more than its budget of {budgets.max_steps} steps; "
                    "completed steps are kept"
                ),
            )
        except AgentError as err:
            outcome = _error(turn, err)
        except Exception as exc:
            logger.exception("agent run failed (%s)", type(exc).__name__)
            outcome = _error(
                turn,
                RunFailedError(
                    f"the run failed ({type(exc).__name__}); the session continues from its "
                    "last completed step"
                ),
            )
        # The session is free before the client hears the outcome, so that its next
        # message never finds the session busy with the turn that just ended.
        turn.finished = True
        self._turns.pop(turn.run_id, None)
        self._count_running(turn.agent)
        ended = "ok" if outcome.type == "final" else str((outcome.error or {}).get("type", "error"))
        self.metrics.turn_ended(
            turn.agent,
            turn.tenant,
            ended,
            time.monotonic() - started,
            steps,
            tokens.usage.input_tokens,
            tokens.usage.output_tokens,
        )
        tracing.annotate(
            {
                "runtime.outcome": ended,
                "runtime.steps": steps,
                "gen_ai.usage.input_tokens": tokens.usage.input_tokens,
                "gen_ai.usage.output_tokens": tokens.usage.output_tokens,
                "gen_ai.completion": content(answer) if content_allowed() and answer else None,
            },
            error=None if ended == "ok" else ended,
        )
        try:
            await asyncio.shield(self.store.release(turn.session_id, turn.run_id))
        except Exception as exc:  # the lease lapses on its own after lease_ttl_s
            logger.warning("releasing a session lease failed: %s", type(exc).__name__)
        put(outcome)
        put(None)


def _error(turn: _Turn, err: AgentError) -> RunEvent:
    return RunEvent(type="error", run_id=turn.run_id, error=err.to_body()["error"])


def _update_messages(update: Any) -> list[BaseMessage]:
    if not isinstance(update, dict):
        return []
    messages = update.get("messages") or []
    return [m for m in messages if isinstance(m, BaseMessage)]


async def _repair(graph: Any, config: dict[str, Any]) -> list[ToolMessage]:
    """Results for tool calls a previous turn left unanswered (cancelled, crashed, over
    budget), so that the conversation stays valid for the model."""
    state = await graph.aget_state(config)
    if not state.next:
        return []
    messages = (state.values or {}).get("messages", [])
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [
        ToolMessage(INTERRUPTED_TOOL, tool_call_id=c["id"], name=c["name"], status="error")
        for m in messages
        if isinstance(m, AIMessage)
        for c in m.tool_calls
        if c["id"] not in answered
    ]


def _message(message: BaseMessage) -> Message | None:
    if isinstance(message, HumanMessage):
        return Message(role="user", content=message.text)
    if isinstance(message, AIMessage):
        calls = [
            ToolCall(id=c["id"] or "", name=c["name"], args=c["args"]) for c in message.tool_calls
        ]
        return Message(role="assistant", content=message.text, tool_calls=calls)
    if isinstance(message, ToolMessage):
        return Message(
            role="tool", content=message.text, tool_call_id=message.tool_call_id, name=message.name
        )
    if isinstance(message, SystemMessage):
        return Message(role="system", content=message.text)
    return None
