"""What agent sessions and runs return: the same models over handles and over HTTP."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: The tenant of handle calls that name none (HTTP callers get their key's tenant).
from runtime.context import DEFAULT_TENANT  # noqa: F401 (the SDK imports it from here)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class SessionInfo(_Model):
    id: str
    agent: str
    created_at: float
    updated_at: float
    turns: int = Field(description="Runs started in this session.")
    running: bool = Field(description="A turn holds the session now.")


class Usage(_Model):
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ToolCall(_Model):
    id: str
    name: str
    args: dict[str, Any]


class ToolResult(_Model):
    id: str
    name: str
    content: str
    is_error: bool = False


class Message(_Model):
    """One message of a session's history."""

    role: Literal["user", "assistant", "tool", "system"]
    content: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None


class RunResult(_Model):
    session_id: str
    run_id: str
    answer: str = Field(description="The last assistant message of the run.")
    steps: int
    usage: Usage
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_results: list[ToolResult] = Field(default_factory=list)
    elapsed_s: float


EventType = Literal["start", "token", "tool_call", "tool_result", "step", "final", "error"]


class RunEvent(_Model):
    """One event of a streamed run.

    ``start`` (run_id), ``token`` (text, node), ``tool_call``, ``tool_result``,
    ``step`` (node, index: a graph step finished; its checkpoint is written right
    after), then either ``final`` (result) or ``error`` (error: the body of an
    :class:`AgentError`).
    """

    type: EventType
    run_id: str
    text: str | None = None
    node: str | None = None
    index: int | None = None
    tool_call: ToolCall | None = None
    tool_result: ToolResult | None = None
    result: RunResult | None = None
    error: dict[str, Any] | None = None
