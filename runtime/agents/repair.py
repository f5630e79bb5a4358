"""A conversation kept valid across failures, and read back as the protocol's messages.

A turn that ended before its tool calls were answered (cancelled, crashed, over
budget) leaves the thread with calls and no results; the next turn first answers them
with :data:`INTERRUPTED_TOOL`, so that the model always sees a well-formed conversation.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from runtime.agents.protocol import Message, ToolCall

INTERRUPTED_TOOL = "Error: the turn ended before this tool call finished."


def repair(saved: Any) -> list[ToolMessage]:
    """Results for the tool calls a previous turn left unanswered in the thread as its
    last checkpoint saved it (``saved``: the checkpointer's ``aget_tuple``, or None).

    The saved checkpoint decides, not the graph's state: a replica killed between a
    step's saved writes and its checkpoint leaves writes that ``aget_state`` shows (and
    an empty ``next``) but that a new run's input discards, so a call answered only
    there is unanswered in the thread the model will see."""
    values = saved.checkpoint.get("channel_values", {}) if saved else {}
    messages = values.get("messages", [])
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    return [
        ToolMessage(INTERRUPTED_TOOL, tool_call_id=c["id"], name=c["name"], status="error")
        for m in messages
        if isinstance(m, AIMessage)
        for c in m.tool_calls
        if c["id"] not in answered
    ]


def to_message(message: BaseMessage) -> Message | None:
    """A LangChain message of the thread as the protocol's (None: not a chat message)."""
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
