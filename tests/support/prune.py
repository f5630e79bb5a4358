"""The clean-up scenario of the prune tests: sessions of known ages seeded into a store,
pruned (a dry run first) and checked (tests/unit/test_sessions_prune.py on SQLite,
tests/cluster/test_sessions_prune.py on the session's PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

from runtime.agents.store import SessionStore, open_store, session_key

DAY = 86400.0
THREADS: dict[str, str] = {}  # session id -> its thread


def key(sid: str) -> str:
    return session_key("t", "assistant", sid)


async def seed(store: SessionStore) -> None:
    """old (40 days idle), old-running (40 days, a live turn), recent (1 day)."""
    from langgraph.checkpoint.base import empty_checkpoint

    now = time.time()
    for sid, age in (("old", 40), ("old-running", 40), ("recent", 1)):
        row = await store.create("t", "assistant", sid)
        assert row is not None
        THREADS[sid] = row.thread_id
        await store.checkpointer.aput(cfg(sid), empty_checkpoint(), {}, {})
        await store._execute(
            "UPDATE runtime_sessions SET updated_at = ? WHERE id = ?", (now - age * DAY, key(sid))
        )
    assert await store.acquire(key("old-running"), "run-1", ttl_s=600)
    await store._execute(
        "UPDATE runtime_sessions SET updated_at = ? WHERE id = ?",
        (now - 40 * DAY, key("old-running")),
    )


def cfg(session_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": THREADS[session_id], "checkpoint_ns": ""}}


async def state(store: SessionStore) -> dict[str, tuple[bool, bool]]:
    """Session id -> (row present, checkpoint present)."""
    return {
        sid: (
            await store.get(key(sid)) is not None,
            await store.checkpointer.aget_tuple(cfg(sid)) is not None,
        )
        for sid in ("old", "old-running", "recent")
    }


async def scenario(config: Any) -> None:
    store = await open_store(config)
    try:
        await seed(store)
        before = await state(store)
        assert before == {"old": (True, True), "old-running": (True, True), "recent": (True, True)}
        idle_before = time.time() - 30 * DAY
        assert await store.prune(idle_before, dry_run=True) == [key("old")]
        assert await state(store) == before
        assert await store.prune(idle_before) == [key("old")]
        assert await state(store) == {
            "old": (False, False),
            "old-running": (True, True),
            "recent": (True, True),
        }
        # The turn ends: the session is idle again, but used just now.
        await store.release(key("old-running"), "run-1")
        assert await store.prune(idle_before) == []
    finally:
        await store.close()
