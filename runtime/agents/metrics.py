"""The agents' metrics (Ray's metrics export: one scrape per node; Ray prefixes
``ray_``). Labels are bounded: agents, tenants, tools and error types come from the
config and the runtime's own error classes, never a session or run id.

    runtime_agent_runs_total{agent, tenant, outcome}     outcome: ok or an error type
    runtime_agent_run_seconds{agent}                     (histogram) a turn, end to end
    runtime_agent_run_steps{agent}                       (histogram) graph steps per turn
    runtime_agent_stage_seconds{agent, stage}            (histogram) llm, tool, checkpoint
    runtime_agent_tokens_total{agent, tenant, direction} direction: input, output
    runtime_agent_turns_running{agent}                   (gauge) turns running here

Outside a Serve replica (unit tests, scripts) nothing is recorded. The same stages are
traced (``tool.call`` here, ``checkpoint.read``/``checkpoint.write`` by
``TimedCheckpointer``; ``llm.call`` by the chat model, around the call it makes).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from langgraph.checkpoint.base import BaseCheckpointSaver

from runtime._metrics import SECONDS as _SECONDS
from runtime._metrics import serve_metrics
from runtime.agents import fencing
from runtime.telemetry import tracing

_STEPS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64]


class AgentMetrics:
    """Recorders for one replica; every method is a no-op when ``enabled`` is False."""

    def __init__(self, metrics: Any | None) -> None:
        self.enabled = metrics is not None
        if metrics is None:
            return
        self.runs = metrics.Counter(
            "runtime_agent_runs_total",
            "Agent turns by outcome.",
            tag_keys=("agent", "tenant", "outcome"),
        )
        self.run_seconds = metrics.Histogram(
            "runtime_agent_run_seconds",
            "Agent turns, end to end.",
            boundaries=_SECONDS,
            tag_keys=("agent",),
        )
        self.steps = metrics.Histogram(
            "runtime_agent_run_steps",
            "Graph steps per agent turn.",
            boundaries=_STEPS,
            tag_keys=("agent",),
        )
        self.stage_seconds = metrics.Histogram(
            "runtime_agent_stage_seconds",
            "LLM calls and tool calls inside agent turns.",
            boundaries=_SECONDS,
            tag_keys=("agent", "stage"),
        )
        self.tokens = metrics.Counter(
            "runtime_agent_tokens_total",
            "LLM tokens of agent turns.",
            tag_keys=("agent", "tenant", "direction"),
        )
        self.running = metrics.Gauge(
            "runtime_agent_turns_running",
            "Agent turns running on this replica.",
            tag_keys=("agent",),
        )

    @classmethod
    def for_replica(cls) -> AgentMetrics:
        return cls(serve_metrics())

    def turn_ended(
        self,
        agent: str,
        tenant: str,
        outcome: str,
        seconds: float,
        steps: int,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        if not self.enabled:
            return
        self.runs.inc(tags={"agent": agent, "tenant": tenant, "outcome": outcome})
        self.run_seconds.observe(seconds, tags={"agent": agent})
        self.steps.observe(steps, tags={"agent": agent})
        for direction, count in (("input", input_tokens), ("output", output_tokens)):
            if count > 0:
                self.tokens.inc(
                    count, tags={"agent": agent, "tenant": tenant, "direction": direction}
                )

    def stage(self, agent: str, stage: str, seconds: float) -> None:
        if self.enabled:
            self.stage_seconds.observe(seconds, tags={"agent": agent, "stage": stage})

    def set_running(self, agent: str, count: int) -> None:
        if self.enabled:
            self.running.set(count, tags={"agent": agent})


class StageTimer(AsyncCallbackHandler):
    """Times a turn's LLM calls and tool calls (LangChain callbacks, by callback run id);
    traces the tool calls as children of the turn's span (current at construction)."""

    def __init__(self, metrics: AgentMetrics, agent: str) -> None:
        self.metrics = metrics
        self.agent = agent
        self._parent = tracing.current_context()
        self._started: dict[UUID, tuple[str, float]] = {}
        self._spans: dict[UUID, Any] = {}

    def _start(self, run_id: UUID, stage: str) -> None:
        self._started[run_id] = (stage, time.monotonic())

    def _end(self, run_id: UUID, error: BaseException | None = None) -> None:
        started = self._started.pop(run_id, None)
        if started is not None:
            self.metrics.stage(self.agent, started[0], time.monotonic() - started[1])
        span = self._spans.pop(run_id, None)
        if span is not None:
            tracing.end(span, error, {"runtime.tool.error": error is not None})

    async def on_chat_model_start(
        self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._start(run_id, "llm")

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    async def on_tool_start(
        self, serialized: Any, input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._start(run_id, "tool")
        name = (serialized or {}).get("name") or kwargs.get("name") or "tool"
        self._spans[run_id] = tracing.start(
            "tool.call",
            {"runtime.agent": self.agent, "runtime.tool": str(name)},
            parent=self._parent,
        )

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end(run_id, error)


_PASS_THROUGH = (
    "get",
    "get_tuple",
    "list",
    "put",
    "put_writes",
    "delete_thread",
    "delete_for_runs",
    "copy_thread",
    "prune",
    "aget",
    "adelete_thread",
    "adelete_for_runs",
    "acopy_thread",
    "aprune",
    "get_delta_channel_history",
    "aget_delta_channel_history",
    "get_next_version",
    "with_allowlist",
)


class TimedCheckpointer(BaseCheckpointSaver):  # type: ignore[type-arg]
    """A LangGraph checkpointer that times and traces another's reads and writes: the
    ``checkpoint`` stage of a turn. Writes pass the turn's lease fence first
    (``runtime.agents.fencing``). Everything else passes through unchanged."""

    def __init__(
        self,
        inner: BaseCheckpointSaver,  # type: ignore[type-arg]
        metrics: AgentMetrics,
        agent: str,
    ) -> None:
        super().__init__(serde=inner.serde)
        self.inner = inner
        self.metrics = metrics
        self.agent = agent

    @property
    def config_specs(self) -> list[Any]:
        return list(self.inner.config_specs)

    @contextmanager
    def _io(self, kind: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            with tracing.span(f"checkpoint.{kind}", {"runtime.agent": self.agent}):
                yield
        finally:
            self.metrics.stage(self.agent, "checkpoint", time.monotonic() - started)

    async def aget_tuple(self, config: Any) -> Any:
        with self._io("read"):
            return await self.inner.aget_tuple(config)

    async def alist(self, config: Any, **kwargs: Any) -> AsyncIterator[Any]:
        with self._io("read"):
            items = [item async for item in self.inner.alist(config, **kwargs)]
        for item in items:
            yield item

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        with self._io("write"):
            await fencing.check()  # a turn that lost its lease writes nothing more
            return await self.inner.aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        with self._io("write"):
            await fencing.check()
            await self.inner.aput_writes(config, writes, task_id, task_path)


def _pass_through(name: str) -> Any:
    def call(self: TimedCheckpointer, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, name)(*args, **kwargs)

    call.__name__ = name
    return call


for _name in _PASS_THROUGH:
    setattr(TimedCheckpointer, _name, _pass_through(_name))
