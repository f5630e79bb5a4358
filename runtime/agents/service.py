"""Sessions and runs of the agents of one application, independent of Serve.

``AgentService`` is what each ``AgentServer`` replica runs; tests and benchmarks
also run it in-process. One instance hosts any number of sessions: a session is a
row in the store plus a LangGraph thread in the checkpointer, so any replica can
serve any session, and nothing about it lives only in a replica's memory. A turn
runs in ``runtime.agents.turn`` (events: ``events``, outcomes: ``outcomes``) under
its session's lease (``leases``); its LLM calls go through this application's LLM
router (``runtime.routing``) under the turn's call context.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable

from langchain_core.language_models import BaseChatModel

from runtime import context
from runtime.agents import fencing, outcomes
from runtime.agents.chat_model import chat_model
from runtime.agents.definitions import build_context, build_graph
from runtime.agents.leases import Leases, Liveness, ray_actor_alive, replica_name
from runtime.agents.metrics import AgentMetrics, TimedCheckpointer
from runtime.agents.protocol import Message, RunEvent, RunResult, SessionInfo
from runtime.agents.repair import INTERRUPTED_TOOL, to_message
from runtime.agents.runs import Runs
from runtime.agents.store import SessionRow, SessionStore, open_store, session_key
from runtime.agents.turn import Agent, Execution, Turn, execute
from runtime.config.agents import AgentAppConfig, LLMRef
from runtime.context import CallContext
from runtime.errors import (
    AgentNotFoundError,
    APIError,
    InvalidInputError,
    RunFailedError,
    SessionExistsError,
    SessionNotFoundError,
    quote,
)
from runtime.routing import LLMRouter
from runtime.telemetry import tracing
from runtime.telemetry.redact import content, content_allowed

__all__ = ["INTERRUPTED_TOOL", "AgentService", "check_id", "check_tenant"]

logger = logging.getLogger("ray.serve")

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$")


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
    context.bind(CallContext(tenant=tenant))
    return tenant


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
        agents: dict[str, Agent],
        metrics: AgentMetrics | None = None,
        router: LLMRouter | None = None,
        holder: str | None = None,
        alive: Liveness | None = None,
    ) -> None:
        """``holder``: this replica's name in its leases, and ``alive``: whether another
        holder is alive (``leases``: take-over; in a Serve replica, its Ray actor)."""
        self.config = config
        self.store = store
        self._agents = agents
        self._turns: dict[str, Turn] = {}
        self._queued = 0  # turns waiting for a busy session
        self.metrics = metrics or AgentMetrics.for_replica()
        self.leases = Leases(store, config.sessions, self._turns, self._cancel, holder, alive)
        self.router = router
        self.runs = Runs(store, config.sessions, self._turns, self.leases)

    @classmethod
    async def open(
        cls,
        config: AgentAppConfig,
        model_factory: Callable[[LLMRef], BaseChatModel] | None = None,
        holder: str | None = None,
        alive: Liveness | None = None,
    ) -> AgentService:
        """``model_factory``: the chat model of an agent's ``llm`` (by default on this
        application's router, one made from ``config.router``); ``holder``, ``alive``:
        as for the constructor (by default this process's Ray actor, if it is one)."""
        if holder is None and alive is None and (holder := replica_name()) is not None:
            alive = ray_actor_alive
        router = LLMRouter(config.router) if config.router is not None else None
        factory = model_factory or (lambda llm: chat_model(llm, router))
        store = await open_store(config.sessions.store)
        metrics = AgentMetrics.for_replica()
        try:
            agents = {}
            for spec in config.agents:
                checkpointer = TimedCheckpointer(store.checkpointer, metrics, spec.name)
                ctx = build_context(spec, factory(spec.llm), checkpointer)
                agents[spec.name] = Agent(spec, build_graph(ctx))
        except Exception:
            await store.close()
            raise
        return cls(config, store, agents, metrics, router, holder, alive)

    async def close(self) -> None:
        """Stop: Serve has let running calls finish for its graceful shutdown window;
        turns still running stop now, retryable (``unavailable``): a retry with the
        turn's idempotency key resumes it on another replica from its last checkpoint."""
        for turn in list(self._turns.values()):
            turn.stopping = True
            turn.cancel("the replica is stopping (a scale-down or a rollout)")
        tasks = [t.task for t in self._turns.values() if t.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        self.leases.stop()
        if self.router is not None:
            await self.router.aclose()
        await self.store.close()

    def _count_running(self, agent: str) -> None:
        self.metrics.set_running(agent, sum(t.agent == agent for t in self._turns.values()))

    # -- sessions ----------------------------------------------------------------

    def load(self) -> tuple[int, int]:
        """Turns running here, and turns waiting here for a busy session."""
        return len(self._turns), self._queued

    def agent_names(self) -> list[str]:
        return list(self._agents)

    def _agent(self, name: str) -> Agent:
        agent = self._agents.get(name)
        if agent is None:
            raise AgentNotFoundError(f"no agent named {quote(name)} in this application")
        return agent

    def _info(self, row: SessionRow) -> SessionInfo:
        return SessionInfo(
            id=row.session_id,
            agent=row.agent,
            created_at=row.created_at,
            updated_at=row.updated_at,
            turns=row.turns,
            running=row.running(),
        )

    async def _owned(self, tenant: str, agent: str, session_id: str) -> SessionRow:
        check_tenant(tenant)
        self._agent(agent)
        check_id(session_id, "the session id")
        # Keyed by tenant and agent too: another tenant's session "s1" is not this one's.
        row = await self.store.get(session_key(tenant, agent, session_id))
        if row is None:
            raise SessionNotFoundError(f"no session {quote(session_id)} for agent {quote(agent)}")
        return row

    async def create_session(
        self, tenant: str, agent: str, session_id: str | None = None
    ) -> SessionInfo:
        check_tenant(tenant)
        self._agent(agent)
        sid = uuid.uuid4().hex if session_id is None else check_id(session_id, "the session id")
        row = await self.store.create(tenant, agent, sid)
        if row is None:  # only this tenant's own sessions of this agent can collide
            raise SessionExistsError(f"a session with id {sid!r} exists already")
        return self._info(row)

    async def get_session(self, tenant: str, agent: str, session_id: str) -> SessionInfo:
        return self._info(await self._owned(tenant, agent, session_id))

    async def delete_session(self, tenant: str, agent: str, session_id: str) -> None:
        """Delete the session and its checkpoints; a running turn is cancelled first.

        A turn running on another replica learns of it at its next lease renewal (its
        row is gone: a stop) and deletes what it wrote meanwhile when it ends
        (``_forget_orphan``); a session created again with the id has a new thread."""
        row = await self._owned(tenant, agent, session_id)
        await self._cancel(row.id, "the session was deleted")
        local = [t.task for t in self._turns.values() if t.key == row.id and t.task]
        if local:  # let a turn cancelled here stop writing checkpoints first
            await asyncio.wait(local, timeout=5)
        await self.store.delete(row)

    async def history(self, tenant: str, agent: str, session_id: str) -> list[Message]:
        row = await self._owned(tenant, agent, session_id)
        graph = self._agents[agent].graph
        state = await graph.aget_state({"configurable": {"thread_id": row.thread_id}})
        messages = (state.values or {}).get("messages", [])
        return [m for m in map(to_message, messages) if m is not None]

    async def cancel(self, tenant: str, agent: str, session_id: str) -> bool:
        """Cancel the session's running turn, on whichever replica runs it."""
        row = await self._owned(tenant, agent, session_id)
        return await self._cancel(row.id, "the run was cancelled by the client")

    async def _cancel(self, key: str, reason: str) -> bool:
        local = [t for t in self._turns.values() if t.key == key]
        for turn in local:
            turn.cancel(reason, final=True)  # on purpose: a retry does not resume it
        remote = await self.store.request_cancel(key)
        return bool(local) or remote is not None

    # -- runs ------------------------------------------------------------------

    async def invoke(
        self,
        tenant: str,
        agent: str,
        session_id: str,
        text: str,
        idempotency_key: str | None = None,
    ) -> RunResult:
        """Run one turn to its end; its result, or the run's error raised."""
        turn = await self.start(
            tenant, agent, session_id, text, stream_tokens=False, idempotency_key=idempotency_key
        )
        async for event in self.events(turn):
            if event.type == "final" and event.result is not None:
                return event.result
            if event.type == "error" and event.error is not None:
                raise APIError.from_body({"error": event.error}, 500)
        raise RunFailedError("the run ended without a result")

    async def stream(
        self,
        tenant: str,
        agent: str,
        session_id: str,
        text: str,
        idempotency_key: str | None = None,
    ) -> AsyncIterator[RunEvent]:
        """Run one turn, yielding its events; closing the stream cancels the run."""
        turn = await self.start(tenant, agent, session_id, text, idempotency_key=idempotency_key)
        async for event in self.events(turn):
            yield event

    async def start(
        self,
        tenant: str,
        agent: str,
        session_id: str,
        text: str,
        *,
        stream_tokens: bool = True,
        idempotency_key: str | None = None,
    ) -> Turn:
        """Validate, take the session (by the agent's busy policy) and start the run.

        With ``idempotency_key`` (``runs``): a turn sent before with the key is not run
        again; this returns its outcome, follows its run, or resumes it if it died."""
        entry = self._agent(agent)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the message must be a non-empty string")
        if len(text) > entry.spec.max_input_chars:
            raise InvalidInputError(
                f"the message has {len(text)} characters; this agent takes at most "
                f"{entry.spec.max_input_chars}"
            )
        row = await self._owned(tenant, agent, session_id)
        turn = Turn(
            run_id=uuid.uuid4().hex,
            session_id=session_id,
            agent=agent,
            tenant=tenant,
            key=row.id,
            thread_id=row.thread_id,
        )
        if idempotency_key is not None:
            turn.idem = check_id(idempotency_key, "the idempotency key")
        answered = await self._take(entry, turn, text)
        if answered is not None:
            return answered
        self._turns[turn.run_id] = turn
        self._count_running(agent)
        run = contextvars.copy_context()  # the turn's LLM calls count for its tenant
        run.run(context.bind, CallContext(tenant, agent, entry.spec.scenario))
        run.run(fencing.FENCE.set, functools.partial(self.leases.fence, turn))
        work = self._execute(entry, turn, text, stream_tokens)
        turn.task = asyncio.create_task(work, context=run)
        self.leases.keep_alive()
        return turn

    async def _take(self, entry: Agent, turn: Turn, text: str) -> Turn | None:
        """Take the session for ``turn``; or, for a turn sent before with its key, the
        turn that answers it (its outcome, or its run followed)."""
        if turn.idem is not None:
            earlier = await self.runs.earlier(entry.spec, turn, text)
            if earlier is not None:
                return earlier
        self._queued += 1
        self.runs.pending.add(turn.run_id)
        try:
            await self.leases.acquire(entry.spec, turn)
        except BaseException:
            await self.leases.release(turn)  # a cancelled acquire may have taken it
            await self.runs.not_run(turn)
            raise
        finally:
            self._queued -= 1
            self.runs.pending.discard(turn.run_id)
        if turn.idem is not None:  # under the lease: is this still the turn's run?
            other = await self.runs.superseded(entry.spec, turn)
            if other is not None:
                await self.leases.release(turn)
                return other
        return None

    async def events(self, turn: Turn) -> AsyncIterator[RunEvent]:
        try:
            yield RunEvent(type="start", run_id=turn.run_id)
            while (event := await turn.events.get()) is not None:
                yield event
        finally:
            turn.cancel("the client stopped reading the run's events")

    async def _execute(self, agent: Agent, turn: Turn, text: str, stream_tokens: bool) -> None:
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
            done = await execute(agent, turn, text, stream_tokens, self.metrics)
            turn.finished = True  # cancels come too late now
            try:
                # Recorded before the run is seen to end (a follower reads it then). The
                # session is free before the client hears the outcome, so that its next
                # message never finds the session busy with the turn that just ended.
                await asyncio.shield(self.runs.ended(turn, done.outcome))
            finally:
                self._turns.pop(turn.run_id, None)
                self._count_running(turn.agent)
                self._report(turn, done)
                await self.leases.release(turn)
                await self._forget_orphan(turn)
                turn.events.put_nowait(done.outcome)
                turn.events.put_nowait(None)

    async def _forget_orphan(self, turn: Turn) -> None:
        """Delete what the turn wrote if its session was deleted meanwhile (on another
        replica, between two lease renewals): no conversation outlives its session."""
        try:
            row = await self.store.get(turn.key)
            if row is None or row.thread_id != turn.thread_id:
                await self.store.checkpointer.adelete_thread(turn.thread_id)
        except Exception as exc:  # the thread stays, unreachable: no session names it
            logger.warning("deleting a deleted session's thread failed: %s", type(exc).__name__)

    def _report(self, turn: Turn, done: Execution) -> None:
        """The turn's metrics and its span's attributes."""
        ended = outcomes.label(done.outcome)
        usage, steps, answer = done.tokens.usage, done.transcript.steps, done.transcript.answer
        self.metrics.turn_ended(
            turn.agent,
            turn.tenant,
            ended,
            done.elapsed_s,
            steps,
            usage.input_tokens,
            usage.output_tokens,
        )
        tracing.annotate(
            {
                "runtime.outcome": ended,
                "runtime.steps": steps,
                "gen_ai.usage.input_tokens": usage.input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.completion": content(answer) if content_allowed() and answer else None,
            },
            error=None if ended == "ok" else ended,
        )
