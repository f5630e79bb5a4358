"""The SDK's session creation, retried like a turn: once, whatever the service said."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runtime.agents.protocol import SessionInfo
from runtime.errors import AgentUnavailableError, SessionExistsError
from runtime.sdk import Agent


class _Flaky:
    """A transport whose first creation makes the session but loses the answer (as
    when the gateway's replica dies after the agents stored it: Serve's proxy says 500)."""

    def __init__(self, lose: int) -> None:
        self.lose, self.made, self.calls = lose, {}, 0

    async def create_session(self, agent: str, sid: str | None) -> SessionInfo:
        self.calls += 1
        assert sid is not None  # the SDK chose it: a retry names the same session
        if sid in self.made:
            raise SessionExistsError(f"a session with id {sid!r} exists already")
        self.made[sid] = SessionInfo(
            id=sid, agent=agent, created_at=0.0, updated_at=0.0, turns=0, running=False
        )
        if self.lose:
            self.lose -= 1
            raise AgentUnavailableError("the agent service answered HTTP 500; retry later")
        return self.made[sid]

    async def get_session(self, agent: str, sid: str) -> SessionInfo:
        return self.made[sid]


def test_a_creation_whose_answer_was_lost_makes_one_session() -> None:
    transport = _Flaky(lose=1)
    session = asyncio.run(Agent(transport, "a", retry_s=10).asession())  # type: ignore[arg-type]
    assert list(transport.made) == [session.id] and transport.calls == 2


def test_without_retries_the_failure_is_the_callers() -> None:
    with pytest.raises(AgentUnavailableError):
        asyncio.run(Agent(_Flaky(lose=1), "a", retry_s=0).asession())  # type: ignore[arg-type]


def test_an_id_taken_before_any_try_is_not_taken_over() -> None:
    transport: Any = _Flaky(lose=0)
    original = transport.create_session

    async def taken(agent: str, sid: str | None) -> SessionInfo:
        await original(agent, sid)  # someone else's, made first
        return await original(agent, sid)

    transport.create_session = taken
    with pytest.raises(SessionExistsError):
        asyncio.run(Agent(transport, "a", retry_s=10).asession())
