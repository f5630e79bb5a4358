"""AgentService in-process, without Ray: two instances on one SQLite file stand for two
replicas, so leases, cross-replica cancels and a replica that dies mid-turn are exact.
The scripted model stands in for the model's choices."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from runtime.agents.service import INTERRUPTED_TOOL, AgentService
from runtime.agents.store import session_key
from runtime.config.agents import AgentAppConfig
from runtime.errors import (
    BudgetExceededError,
    InvalidInputError,
    RunCancelledError,
    SessionBusyError,
    SessionExistsError,
    SessionNotFoundError,
)
from tests.support.stack import scripted_agent

T = TypeVar("T")


def _config(tmp_path: Path, **agent: Any) -> AgentAppConfig:
    return AgentAppConfig.model_validate(
        {
            "agents": [scripted_agent("s", **agent)],
            "sessions": {
                "lease_ttl_s": 1.5,
                "poll_interval_s": 0.05,
                "store": {"kind": "sqlite", "path": str(tmp_path / "s.sqlite")},
            },
        }
    )


def _run(
    tmp_path: Path, body: Callable[[AgentService, AgentService], Awaitable[T]], **agent: Any
) -> T:
    async def main() -> T:
        config = _config(tmp_path, **agent)
        one, two = await AgentService.open(config), await AgentService.open(config)
        try:
            return await body(one, two)
        finally:
            await one.close()
            await two.close()

    return asyncio.run(main())


async def _wait_running(service: AgentService, sid: str) -> None:
    for _ in range(200):
        if (await service.get_session("t", "s", sid)).running:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run never took the session")


def test_a_session_is_served_by_either_replica(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> list[str]:
        sid = (await one.create_session("t", "s")).id
        await one.invoke("t", "s", sid, "add")
        await two.invoke("t", "s", sid, "hi")
        return [m.content for m in await one.history("t", "s", sid)]

    assert _run(tmp_path, body) == ["add", "", "5", "2+3=5", "hi", "echo: hi"]


def test_cancel_reaches_the_replica_running_the_turn(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> dict[str, Any]:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "slow")
        assert await two.cancel("t", "s", sid)  # through the store, not in-process
        events = [e async for e in one.events(turn)]
        assert events[-1].error is not None
        return events[-1].error

    error = _run(tmp_path, body)
    assert error["type"] == RunCancelledError.type


def test_interrupt_from_another_replica(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> tuple[str, str]:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "slow")
        await _wait_running(one, sid)
        result = await two.invoke("t", "s", sid, "newer")
        events = [e async for e in one.events(turn)]
        assert events[-1].error is not None
        return result.answer, events[-1].error["message"]

    answer, message = _run(tmp_path, body, busy="interrupt")
    assert answer == "echo: newer" and "newer message" in message


def test_reject_across_replicas(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> None:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "slow")
        with pytest.raises(SessionBusyError):
            await two.invoke("t", "s", sid, "hi")
        await one.cancel("t", "s", sid)
        [e async for e in one.events(turn)]
        assert (await two.invoke("t", "s", sid, "hi")).answer == "echo: hi"

    _run(tmp_path, body)


def test_a_dead_replicas_lease_lapses(tmp_path: Path) -> None:
    """A replica that dies stops renewing; the session is free after lease_ttl_s and
    continues from its last checkpoint."""

    async def body(one: AgentService, two: AgentService) -> list[str]:
        sid = (await one.create_session("t", "s")).id
        await one.invoke("t", "s", sid, "add")
        # A run that took the lease and died: nobody renews or releases it.
        assert await one.store.acquire(session_key("t", "s", sid), "dead-run", ttl_s=1.5)
        with pytest.raises(SessionBusyError):
            await two.invoke("t", "s", sid, "hi")
        await asyncio.sleep(1.6)
        await two.invoke("t", "s", sid, "hi")
        return [m.content for m in await two.history("t", "s", sid)]

    assert _run(tmp_path, body)[-2:] == ["hi", "echo: hi"]


def test_queue_waits_across_replicas(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> list[str]:
        sid = (await one.create_session("t", "s")).id
        first = asyncio.create_task(one.invoke("t", "s", sid, "half a second"))
        await _wait_running(one, sid)
        second = await two.invoke("t", "s", sid, "then me")
        assert (await first).answer == "done: half a second"
        assert second.answer == "echo: then me"
        return [m.content for m in await two.history("t", "s", sid)]

    assert _run(tmp_path, body, busy="queue") == [
        "half a second",
        "done: half a second",
        "then me",
        "echo: then me",
    ]


def test_queue_gives_up_after_the_time_budget(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> None:
        sid = (await one.create_session("t", "s")).id
        assert await one.store.acquire(session_key("t", "s", sid), "a-long-run", ttl_s=60)
        with pytest.raises(SessionBusyError, match="stayed busy for 1 s"):
            await two.invoke("t", "s", sid, "hi")
        assert await two.history("t", "s", sid) == []  # the message was not run

    _run(tmp_path, body, busy="queue", budgets={"max_seconds": 1})


def test_a_cut_off_tool_call_is_answered_before_the_next_turn(tmp_path: Path) -> None:
    """Three steps end the "loop" run right after a model step that called a tool: the
    next turn first gives that call an error result, so the conversation stays valid."""

    async def body(one: AgentService, two: AgentService) -> list[tuple[str, str]]:
        sid = (await one.create_session("t", "s")).id
        with pytest.raises(BudgetExceededError, match="3 steps"):
            await one.invoke("t", "s", sid, "loop")
        await two.invoke("t", "s", sid, "hi")
        return [(m.role, m.content) for m in await two.history("t", "s", sid)]

    history = _run(tmp_path, body, budgets={"max_steps": 3})
    assert history == [
        ("user", "loop"),
        ("assistant", ""),
        ("tool", "2"),
        ("assistant", ""),
        ("tool", INTERRUPTED_TOOL),
        ("user", "hi"),
        ("assistant", "echo: hi"),
    ]


def test_deleting_a_session_cancels_its_turn_and_drops_its_checkpoints(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> tuple[str, Any]:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "tool then slow")
        while not any(m.role == "tool" for m in await two.history("t", "s", sid)):
            await asyncio.sleep(0.02)
        row = await one.store.get(session_key("t", "s", sid))
        assert row is not None
        await one.delete_session("t", "s", sid)
        events = [e async for e in one.events(turn)]
        with pytest.raises(SessionNotFoundError):
            await two.history("t", "s", sid)
        config = {"configurable": {"thread_id": row.thread_id}}
        assert events[-1].error is not None
        return events[-1].error["type"], await two.store.checkpointer.aget_tuple(config)

    error, checkpoint = _run(tmp_path, body)
    assert error == RunCancelledError.type and checkpoint is None


async def _all_checkpoints(service: AgentService) -> list[Any]:
    return [c async for c in service.store.checkpointer.alist(None)]


def test_a_session_deleted_on_another_replica_mid_turn_leaves_no_conversation(
    tmp_path: Path,
) -> None:
    """The turn runs on `one`, the delete lands on `two`: `one` learns it at its next
    lease renewal (the row is gone: a stop) and deletes what it wrote meanwhile; the id
    created again, by this tenant or another, starts empty. (Before: the turn ran on,
    its checkpoints recreated the thread, keyed by the bare session id, and the next
    session of that id, of any tenant, read the old conversation.)"""

    async def body(one: AgentService, two: AgentService) -> None:
        await one.create_session("t", "s", "s1")
        await one.invoke("t", "s", "s1", "add")
        turn = await one.start("t", "s", "s1", "tool then slow", stream_tokens=False)
        while not any(m.role == "tool" for m in await two.history("t", "s", "s1")):
            await asyncio.sleep(0.02)
        await two.delete_session("t", "s", "s1")
        async with asyncio.timeout(10):  # the turn would sleep 30 s if nobody stopped it
            events = [e async for e in one.events(turn)]
        assert events[-1].error is not None
        assert events[-1].error["type"] == RunCancelledError.type
        await two.create_session("t", "s", "s1")
        await two.create_session("u", "s", "s1")
        assert await one.history("t", "s", "s1") == []
        assert await one.history("u", "s", "s1") == []
        assert await _all_checkpoints(one) == []

    _run(tmp_path, body)


def test_two_tenants_may_each_have_a_session_of_the_same_id(tmp_path: Path) -> None:
    """Ids are per tenant and agent: another tenant's id is not answered 409 (which told
    the caller that someone has a session of that id), and is never shared."""

    async def body(one: AgentService, two: AgentService) -> None:
        await one.create_session("t", "s", "shared")
        await two.create_session("u", "s", "shared")
        assert (await one.invoke("t", "s", "shared", "add")).answer == "2+3=5"
        assert await two.history("u", "s", "shared") == []
        assert [m.content for m in await one.history("t", "s", "shared")][-1] == "2+3=5"
        with pytest.raises(SessionExistsError):
            await two.create_session("t", "s", "shared")

    _run(tmp_path, body)


def test_a_store_of_the_older_schema_keeps_its_sessions(tmp_path: Path) -> None:
    """Rows from before keys and threads (id = session id = thread) are moved once, on
    open, to their key, and keep their conversation."""
    import sqlite3

    async def write_old() -> None:
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            config = {"configurable": {"thread_id": "old-1", "checkpoint_ns": ""}}
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"messages": [HumanMessage("from before")]}
            await saver.aput(config, checkpoint, {}, {})

    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.base import empty_checkpoint
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = tmp_path / "s.sqlite"
    asyncio.run(write_old())
    with sqlite3.connect(path) as db:
        db.execute(_OLD_SCHEMA)
        db.execute(
            "INSERT INTO runtime_sessions VALUES ('old-1', 's', 't', 1, 1, 1, NULL, NULL, NULL)"
        )
        # A key that exists already (a row an older replica made after the move) is left
        # as it is: moving it would break the key, and every replica's start with it.
        db.execute("ALTER TABLE runtime_sessions ADD COLUMN thread_id TEXT")
        db.execute(
            "INSERT INTO runtime_sessions VALUES ('t/s/old-2', 's', 't', 1, 1, 0, NULL, NULL, "
            "NULL, 'thread-2'), ('old-2', 's', 't', 1, 1, 0, NULL, NULL, NULL, NULL)"
        )

    async def body(one: AgentService, two: AgentService) -> None:
        assert (await two.get_session("t", "s", "old-1")).turns == 1
        assert (await two.get_session("t", "s", "old-2")).turns == 0
        assert [m.content for m in await one.history("t", "s", "old-1")] == ["from before"]
        with pytest.raises(SessionNotFoundError):
            await one.get_session("u", "s", "old-1")

    _run(tmp_path, body)


_OLD_SCHEMA = """CREATE TABLE runtime_sessions (
    id TEXT PRIMARY KEY, agent TEXT NOT NULL, tenant TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0, run_id TEXT, lease_until DOUBLE PRECISION, cancel_run TEXT
)"""


def test_runs_cancelled_mid_write_never_lock_out_other_replicas(tmp_path: Path) -> None:
    """Cancel runs at many points of their checkpoint and lease writes; the other
    replica's writes must never wait on a transaction the cancelled run left open."""

    async def body(one: AgentService, two: AgentService) -> int:
        done = 0
        for i in range(40):
            sid = (await one.create_session("t", "s")).id
            turn = await one.start("t", "s", sid, "add")
            await asyncio.sleep(i * 0.0005)
            turn.cancel("test")
            [e async for e in one.events(turn)]
            await asyncio.wait_for(two.create_session("t", "s"), timeout=5)
            await asyncio.wait_for(two.invoke("t", "s", sid, "hi"), timeout=5)
            done += 1
        return done

    assert _run(tmp_path, body) == 40


def _run_named(
    tmp_path: Path,
    body: Callable[[AgentService, AgentService, set[str]], Awaitable[T]],
    **agent: Any,
) -> T:
    """Two replicas named "one" and "two", and which of them Ray would call alive (a
    stand-in for Ray's actor table, which tests/cluster/test_agents_recovery.py uses)."""

    async def main() -> T:
        config = _config(tmp_path, **agent)
        live = {"one", "two"}

        async def alive(name: str) -> bool:
            return name in live

        one = await AgentService.open(config, holder="one", alive=alive)
        two = await AgentService.open(config, holder="two", alive=alive)
        try:
            return await body(one, two, live)
        finally:
            await one.close()
            await two.close()

    return asyncio.run(main())


def test_a_dead_holders_session_is_taken_at_once(tmp_path: Path) -> None:
    """The lease names its replica; while that replica lives the session is busy, once
    it is dead the next message takes the session without waiting for the lease (60 s
    here) to lapse, and continues from the last checkpoint."""

    async def body(one: AgentService, two: AgentService, live: set[str]) -> list[str]:
        sid = (await one.create_session("t", "s")).id
        await one.invoke("t", "s", sid, "add")
        # A turn of `one` holds the lease for a minute; `one` is alive: busy.
        assert await one.store.acquire(session_key("t", "s", sid), "run-of-one", 60, "one")
        with pytest.raises(SessionBusyError):
            await two.invoke("t", "s", sid, "hi")
        live.discard("one")  # the replica died
        async with asyncio.timeout(2):
            assert (await two.invoke("t", "s", sid, "hi")).answer == "echo: hi"
        assert two.leases.taken_over == 1
        return [m.content for m in await two.history("t", "s", sid)]

    assert _run_named(tmp_path, body)[-2:] == ["hi", "echo: hi"]


def test_a_turn_that_lost_its_lease_writes_nothing_more(tmp_path: Path) -> None:
    """A live replica stalls (its renewals stop reaching the store), its lease lapses and
    another turn takes the session. When the stalled turn comes back it stops before its
    next checkpoint write (LeaseLostError, retryable), and the other turn's messages
    stand. (Before: it wrote its answer on top of the other turn's, two turns on one
    thread.)"""

    async def body(one: AgentService, two: AgentService, live: set[str]) -> tuple[Any, list[str]]:
        sid = (await one.create_session("t", "s")).id

        async def stalled(runs: Any, ttl_s: float) -> dict[str, str]:
            return {}  # the heartbeat runs, but nothing reaches the database

        one.store.renew = stalled  # type: ignore[method-assign]
        turn = await one.start("t", "s", sid, "half a second", stream_tokens=False)
        await _wait_running(one, sid)
        await one.store._execute("UPDATE runtime_sessions SET lease_until = 0")  # lapsed
        assert (await two.invoke("t", "s", sid, "hi")).answer == "echo: hi"
        events = [e async for e in one.events(turn)]
        return events[-1].error, [m.content for m in await two.history("t", "s", sid)]

    error, history = _run_named(tmp_path, body)
    assert error is not None and error["type"] == "unavailable"
    assert "lost its session's lease" in error["message"]
    assert history[-2:] == ["hi", "echo: hi"] and "done: half a second" not in history


def test_lease_times_are_the_databases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica whose clock runs an hour ahead takes a lease of 1.5 s, not of an hour
    and 1.5 s: the other replica gets the session once it lapses."""
    import time

    async def body(one: AgentService, two: AgentService) -> str:
        sid = (await one.create_session("t", "s")).id
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        assert await one.store.acquire(session_key("t", "s", sid), "skewed-run", ttl_s=1.5)
        monkeypatch.setattr(time, "time", real)
        with pytest.raises(SessionBusyError):
            await two.invoke("t", "s", sid, "hi")
        await asyncio.sleep(1.6)
        return (await two.invoke("t", "s", sid, "hi")).answer

    assert _run(tmp_path, body) == "echo: hi"


def test_a_retried_turn_is_answered_once(tmp_path: Path) -> None:
    """The same key after the run ended: the same result (same run), the message and
    its tool call once in the history, the session's turn count unchanged."""

    async def body(one: AgentService, two: AgentService) -> tuple[Any, Any, list[str], int]:
        sid = (await one.create_session("t", "s")).id
        first = await one.invoke("t", "s", sid, "add", idempotency_key="k1")
        again = await two.invoke("t", "s", sid, "add", idempotency_key="k1")
        info = await two.get_session("t", "s", sid)
        return first, again, [m.content for m in await two.history("t", "s", sid)], info.turns

    first, again, history, turns = _run(tmp_path, body)
    assert again == first and first.answer == "2+3=5"
    assert history == ["add", "", "5", "2+3=5"] and turns == 1


def test_a_retry_while_the_run_runs_follows_it(tmp_path: Path) -> None:
    """A retry lands on the other replica while the first run is still going: it waits
    for that run's outcome instead of running the message again (or SessionBusy)."""

    async def body(one: AgentService, two: AgentService) -> tuple[Any, Any, list[str]]:
        sid = (await one.create_session("t", "s")).id
        first = asyncio.create_task(
            one.invoke("t", "s", sid, "half a second", idempotency_key="k1")
        )
        await _wait_running(one, sid)
        again = await two.invoke("t", "s", sid, "half a second", idempotency_key="k1")
        return await first, again, [m.content for m in await two.history("t", "s", sid)]

    first, again, history = _run(tmp_path, body)
    assert again.run_id == first.run_id and again.answer == "done: half a second"
    assert history == ["half a second", "done: half a second"]


def test_a_retry_resumes_a_cut_off_run_from_its_checkpoint(tmp_path: Path) -> None:
    """The run is cut off after its tool step (a cut connection cancels it); the retry
    continues from the checkpoint: the message and the tool call are not repeated."""

    async def body(one: AgentService, two: AgentService) -> tuple[str, list[str]]:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "tool then two seconds", idempotency_key="k1")
        while not any(m.role == "tool" for m in await two.history("t", "s", sid)):
            await asyncio.sleep(0.02)
        turn.cancel("the client's connection was cut")
        [e async for e in one.events(turn)]
        again = await two.invoke("t", "s", sid, "tool then two seconds", idempotency_key="k1")
        return again.answer, [m.content for m in await two.history("t", "s", sid)]

    answer, history = _run(tmp_path, body)
    assert answer == "done after the tool"
    assert history == ["tool then two seconds", "", "2", "done after the tool"]


def test_a_retry_of_a_run_that_failed_gets_the_same_error(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> int:
        sid = (await one.create_session("t", "s")).id
        for service in (one, two):
            with pytest.raises(BudgetExceededError, match="3 steps"):
                await service.invoke("t", "s", sid, "loop", idempotency_key="k1")
        return (await one.get_session("t", "s", sid)).turns

    assert _run(tmp_path, body, budgets={"max_steps": 3}) == 1


def test_a_stopping_replicas_turn_ends_retryable_and_resumes_elsewhere(tmp_path: Path) -> None:
    """A replica stopped by a scale-down or a rollout, after Serve's graceful window:
    its running turn ends `unavailable` (was: `run_cancelled`, which no client retries),
    and the retry with the turn's key resumes it on another replica."""

    async def body(one: AgentService, two: AgentService) -> tuple[Any, str, list[str]]:
        stopping = await AgentService.open(_config(tmp_path))
        sid = (await one.create_session("t", "s")).id
        turn = await stopping.start("t", "s", sid, "tool then two seconds", idempotency_key="k")
        while not any(m.role == "tool" for m in await one.history("t", "s", sid)):
            await asyncio.sleep(0.02)
        events = asyncio.create_task(_all(stopping.events(turn)))
        await stopping.close()
        error = (await events)[-1].error
        again = await two.invoke("t", "s", sid, "tool then two seconds", idempotency_key="k")
        return error, again.answer, [m.content for m in await two.history("t", "s", sid)]

    error, answer, history = _run(tmp_path, body)
    assert error is not None and error["type"] == "unavailable", error
    assert answer == "done after the tool"
    assert history == ["tool then two seconds", "", "2", "done after the tool"]


async def _all(events: Any) -> list[Any]:
    return [e async for e in events]


def test_a_retry_while_the_first_run_waits_for_the_session_follows_it(tmp_path: Path) -> None:
    """The first run of key k waits (queue) for a busy session on `two`; its retry on
    `one` follows it instead of running the turn a second time. (Before the run's claim
    counted as running: the retry took the record over and both ran.)"""

    async def body(one: AgentService, two: AgentService, live: set[str]) -> tuple[Any, ...]:
        sid = (await one.create_session("t", "s")).id
        busy = asyncio.create_task(one.invoke("t", "s", sid, "half a second"))
        await _wait_running(one, sid)
        first = asyncio.create_task(two.invoke("t", "s", sid, "hi", idempotency_key="k"))
        await asyncio.sleep(0.1)  # `two` has claimed k and waits for the session
        again = await one.invoke("t", "s", sid, "hi", idempotency_key="k")
        await busy
        return await first, again, [m.content for m in await one.history("t", "s", sid)]

    first, again, history = _run_named(tmp_path, body, busy="queue")
    assert again.run_id == first.run_id and again.answer == "echo: hi"
    assert history.count("echo: hi") == 1 and history.count("hi") == 1


def test_a_turn_whose_lease_another_took_ends_retryable(tmp_path: Path) -> None:
    """Its heartbeat reaches the store and finds another run holding the lease: the
    turn ends `unavailable` (a retry resumes it), not `run_cancelled`."""

    async def body(one: AgentService, two: AgentService, live: set[str]) -> Any:
        sid = (await one.create_session("t", "s")).id
        turn = await one.start("t", "s", sid, "slow", stream_tokens=False)  # 30 s
        await _wait_running(one, sid)
        key = session_key("t", "s", sid)
        await two.store._execute("UPDATE runtime_sessions SET lease_until = 0")
        assert await two.store.acquire(key, "another-run", 60, "two")
        async with asyncio.timeout(10):  # the heartbeat stops it, not its 30 s
            return [e async for e in one.events(turn)][-1].error

    error = _run_named(tmp_path, body)
    assert error is not None and error["type"] == "unavailable", error


def test_a_key_is_bound_to_its_message_and_a_cancel_is_final(tmp_path: Path) -> None:
    async def body(one: AgentService, two: AgentService) -> None:
        sid = (await one.create_session("t", "s")).id
        await one.invoke("t", "s", sid, "add", idempotency_key="k1")
        with pytest.raises(InvalidInputError, match="another message"):
            await two.invoke("t", "s", sid, "hi", idempotency_key="k1")
        turn = await one.start("t", "s", sid, "slow", idempotency_key="k2")
        await _wait_running(one, sid)
        assert await two.cancel("t", "s", sid)  # on purpose: the retry is told so
        [e async for e in one.events(turn)]
        with pytest.raises(RunCancelledError):
            await two.invoke("t", "s", sid, "slow", idempotency_key="k2")

    _run(tmp_path, body)


async def _cut_before_checkpoint(one: AgentService, step: int) -> str:
    """A new session whose "add" turn (key k1) on ``one`` is cut after step ``step``'s
    writes were saved and before its checkpoint (the replica dies in between)."""
    checkpointer = one._agents["s"].graph.checkpointer
    put = checkpointer.aput
    hit = asyncio.Event()

    async def aput(config: Any, checkpoint: Any, metadata: Any, versions: Any) -> Any:
        if metadata.get("step") == step:
            hit.set()
            await asyncio.Event().wait()  # the replica dies before this checkpoint
        return await put(config, checkpoint, metadata, versions)

    checkpointer.aput = aput  # type: ignore[method-assign]
    sid = (await one.create_session("t", "s")).id
    turn = await one.start("t", "s", sid, "add", stream_tokens=False, idempotency_key="k1")
    await asyncio.wait_for(hit.wait(), 10)
    await asyncio.sleep(0.3)
    turn.cancel("cut")
    _ = [e async for e in one.events(turn)]
    return sid


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_run_killed_between_a_steps_writes_and_its_checkpoint_resumes(
    tmp_path: Path, step: int
) -> None:
    """LangGraph saves a step's writes, then its checkpoint: a replica killed between
    the two left a state whose `next` was empty mid-turn, and the retry answered ''
    (seen once in the chaos run, at a node kill). It resumes and answers."""

    async def body(one: AgentService, two: AgentService) -> tuple[str, list[str]]:
        sid = await _cut_before_checkpoint(one, step)
        again = await two.invoke("t", "s", sid, "add", idempotency_key="k1")
        await two.invoke("t", "s", sid, "add", idempotency_key="k2")
        return again.answer, [m.content for m in await two.history("t", "s", sid)]

    answer, history = _run(tmp_path, body)
    assert answer == "2+3=5"
    assert history == ["add", "", "5", "2+3=5"] * 2


@pytest.mark.parametrize("step", [1, 2, 3])
def test_a_new_turn_after_a_run_killed_before_its_checkpoint_sees_a_valid_thread(
    tmp_path: Path, step: int
) -> None:
    """The same cut, but the client gives up and sends a new message (a new key): the
    tool call the cut run left unanswered is answered as interrupted, and the new turn
    runs on a well-formed thread (it used to go after the unanswered call)."""

    async def body(one: AgentService, two: AgentService) -> tuple[str, list[str]]:
        sid = await _cut_before_checkpoint(one, step)
        again = await two.invoke("t", "s", sid, "add", idempotency_key="k2")
        msgs = await two.history("t", "s", sid)
        return again.answer, [m.role + ("+call" if m.tool_calls else "") for m in msgs]

    answer, roles = _run(tmp_path, body)
    assert answer == "2+3=5"
    assert roles[-4:] == ["user", "assistant+call", "tool", "assistant"], roles
    # every call is followed by its result: the model never sees a call left unanswered
    follows = [roles[i + 1] for i, role in enumerate(roles) if role == "assistant+call"]
    assert follows and set(follows) == {"tool"}, roles
