"""A turn's graph stream, translated into the protocol's run events.

LangGraph streams ``("messages", (chunk, meta))`` for tokens and ``("updates",
{node: update})`` after each step; a :class:`Transcript` turns them into ``token``,
``tool_call``, ``tool_result`` and ``step`` events and keeps what the turn's result
reports (steps, the answer, tool calls and results).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage

from runtime.agents.protocol import EventType, RunEvent, RunResult, ToolCall, ToolResult, Usage


class Transcript:
    """What one turn said so far. Example::

    transcript = Transcript(run_id, queue.put_nowait)
    async for mode, chunk in graph.astream(..., stream_mode=["updates", "messages"]):
        transcript.add(mode, chunk)
    """

    def __init__(self, run_id: str, emit: Callable[[RunEvent], None]) -> None:
        self.run_id = run_id
        self._emit = emit
        self.steps = 0
        self.answer = ""
        self.calls: list[ToolCall] = []
        self.results: list[ToolResult] = []

    def add(self, mode: str, chunk: Any) -> None:
        if mode == "messages":
            message, meta = chunk
            if isinstance(message, AIMessageChunk) and message.text:
                node = meta.get("langgraph_node")
                self._event("token", node, text=message.text)
            return
        for node, update in chunk.items():
            if not node.startswith("__"):
                self._step(node, update)

    def _event(self, type: EventType, node: str | None, **fields: Any) -> None:
        self._emit(RunEvent(type=type, run_id=self.run_id, node=node, **fields))

    def _step(self, node: str, update: Any) -> None:
        self.steps += 1
        for message in _update_messages(update):
            if isinstance(message, AIMessage):
                self._assistant(node, message)
            elif isinstance(message, ToolMessage):
                result = ToolResult(
                    id=message.tool_call_id,
                    name=message.name or "",
                    content=message.text,
                    is_error=message.status == "error",
                )
                self.results.append(result)
                self._event("tool_result", node, tool_result=result)
        self._event("step", node, index=self.steps)

    def _assistant(self, node: str, message: AIMessage) -> None:
        for c in message.tool_calls:
            call = ToolCall(id=c["id"] or "", name=c["name"], args=c["args"])
            self.calls.append(call)
            self._event("tool_call", node, tool_call=call)
        if not message.tool_calls:
            self.answer = message.text

    def result(self, session_id: str, usage: Usage, elapsed_s: float) -> RunResult:
        return RunResult(
            session_id=session_id,
            run_id=self.run_id,
            answer=self.answer,
            steps=self.steps,
            usage=usage,
            tool_calls=self.calls,
            tool_results=self.results,
            elapsed_s=elapsed_s,
        )


def _update_messages(update: Any) -> list[BaseMessage]:
    if not isinstance(update, dict):
        return []
    messages = update.get("messages") or []
    return [m for m in messages if isinstance(m, BaseMessage)]
