"""Where sessions live: a table of sessions (owner, lease of the running turn) beside
LangGraph's checkpointer (conversation and graph state), in SQLite or PostgreSQL.

Leases make "any replica serves any session" safe: a turn runs only while its
replica holds the session's lease, which the replica renews while the turn runs.
A replica that dies stops renewing; its leases lapse after ``lease_ttl_s`` and the
session is free again, its state intact up to the last checkpoint.

A session's row is keyed by its tenant, agent and id together (``key``: two tenants
may each have a session "s1", and neither can tell that the other has), and names its
own LangGraph thread, a random id made when the row is: a session deleted and created
again never finds the old conversation, whatever a late turn still writes to the old
thread (the service deletes that thread when the turn ends).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity

from runtime import _env
from runtime.config.agents import PostgresStore, SqliteStore, StoreConfig

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runtime_sessions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    tenant TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    lease_until DOUBLE PRECISION,
    cancel_run TEXT
)
"""
#: Rows of the schema before keys and threads (id = the session id = its thread): each
#: is moved once, in one statement, to its key, keeping its thread.
_ADD_THREAD = "ALTER TABLE runtime_sessions ADD COLUMN thread_id TEXT"
_MIGRATE = (
    "UPDATE runtime_sessions SET thread_id = id, id = tenant || '/' || agent || '/' || id "
    "WHERE thread_id IS NULL AND NOT EXISTS (SELECT 1 FROM runtime_sessions AS k "
    "WHERE k.id = runtime_sessions.tenant || '/' || runtime_sessions.agent || '/' "
    "|| runtime_sessions.id)"
)
_TRY_LOCK = "SELECT pg_try_advisory_lock(724011) AS locked"
_COLUMNS = "id, agent, tenant, created_at, updated_at, turns, run_id, lease_until, thread_id"


def session_key(tenant: str, agent: str, session_id: str) -> str:
    """A session's row id: tenant, agent and session id (none of which holds a '/')."""
    return f"{tenant}/{agent}/{session_id}"


@dataclass(frozen=True)
class SessionRow:
    id: str  # the key: tenant/agent/session id
    agent: str
    tenant: str
    created_at: float
    updated_at: float
    turns: int
    run_id: str | None
    lease_until: float | None
    thread_id: str

    @property
    def session_id(self) -> str:
        """The id the client knows."""
        return self.id.rsplit("/", 1)[-1]

    def running(self, now: float) -> bool:
        return self.run_id is not None and (self.lease_until or 0.0) >= now

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SessionRow:
        return cls(**{k: row[k] for k in _COLUMNS.split(", ")})


class SessionStore(ABC):
    """The sessions table. Times are the replicas' clocks (keep them in sync with NTP)."""

    #: The LangGraph checkpointer on the same database.
    checkpointer: Any

    @abstractmethod
    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the number of rows it changed."""

    @abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        """Run a query; its rows, by column name."""

    @abstractmethod
    async def close(self) -> None: ...

    async def create(self, tenant: str, agent: str, session_id: str) -> SessionRow | None:
        """The new session with a thread of its own, or None when the id is taken (in
        this tenant's and agent's namespace)."""
        now = time.time()
        key, thread = session_key(tenant, agent, session_id), uuid.uuid4().hex
        changed = await self._execute(
            "INSERT INTO runtime_sessions (id, agent, tenant, created_at, updated_at, thread_id) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (key, agent, tenant, now, now, thread),
        )
        return SessionRow(key, agent, tenant, now, now, 0, None, None, thread) if changed else None

    async def get(self, key: str) -> SessionRow | None:
        rows = await self._fetch(f"SELECT {_COLUMNS} FROM runtime_sessions WHERE id = ?", (key,))
        return SessionRow.of(rows[0]) if rows else None

    async def delete(self, row: SessionRow) -> bool:
        """Delete the session: its checkpoints first, then its row (a failure between
        leaves the row, and deleting again finishes the work). Each step is retried a
        few times on a database error before the error is raised."""
        await _retried(self.checkpointer.adelete_thread, row.thread_id)
        deleted = await _retried(
            self._execute,
            "DELETE FROM runtime_sessions WHERE id = ? AND thread_id = ?",
            (row.id, row.thread_id),
        )
        return bool(deleted)

    async def prune(self, idle_before: float, dry_run: bool = False) -> list[str]:
        """Delete the sessions (and their checkpoints) last used before ``idle_before``
        and running no turn; the ids deleted (or, with ``dry_run``, that would be).

        Each is deleted only if it is still idle at that moment: a session that starts a
        turn meanwhile stays.
        """
        idle = "updated_at < ? AND (run_id IS NULL OR COALESCE(lease_until, 0) < ?)"
        rows = await self._fetch(
            f"SELECT id FROM runtime_sessions WHERE {idle} ORDER BY updated_at",
            (idle_before, time.time()),
        )
        ids = [str(r["id"]) for r in rows]
        if dry_run:
            return ids
        deleted = []
        for key in ids:
            rows = await self._fetch(
                f"DELETE FROM runtime_sessions WHERE id = ? AND {idle} RETURNING thread_id",
                (key, idle_before, time.time()),
            )
            if rows:
                await _retried(self.checkpointer.adelete_thread, rows[0]["thread_id"])
                deleted.append(key)
        return deleted

    async def acquire(self, key: str, run_id: str, ttl_s: float) -> bool:
        """Take the session's lease for ``run_id`` unless a live turn holds it."""
        now = time.time()
        return (
            await self._execute(
                "UPDATE runtime_sessions SET run_id = ?, lease_until = ?, cancel_run = NULL, "
                "turns = turns + 1, updated_at = ? "
                "WHERE id = ? AND (run_id IS NULL OR lease_until < ?)",
                (run_id, now + ttl_s, now, key, now),
            )
            == 1
        )

    async def release(self, key: str, run_id: str) -> None:
        await self._execute(
            "UPDATE runtime_sessions SET run_id = NULL, lease_until = NULL, cancel_run = NULL, "
            "updated_at = ? WHERE id = ? AND run_id = ?",
            (time.time(), key, run_id),
        )

    async def renew(self, run_ids: Sequence[str], ttl_s: float) -> set[str]:
        """Extend the leases of these runs; the runs to stop: asked to (cancel or
        interrupt), or no longer holding a lease (their session was deleted, or the
        lease lapsed and another turn took it)."""
        if not run_ids:
            return set()
        marks = ", ".join("?" * len(run_ids))
        await self._execute(
            f"UPDATE runtime_sessions SET lease_until = ? WHERE run_id IN ({marks})",
            (time.time() + ttl_s, *run_ids),
        )
        rows = await self._fetch(
            f"SELECT run_id FROM runtime_sessions WHERE run_id IN ({marks}) "
            "AND (cancel_run IS NULL OR cancel_run <> run_id)",
            tuple(run_ids),
        )
        return set(run_ids) - {str(r["run_id"]) for r in rows}

    async def request_cancel(self, key: str) -> str | None:
        """Ask the replica running this session's turn to stop it; that run's id."""
        now = time.time()
        await self._execute(
            "UPDATE runtime_sessions SET cancel_run = run_id "
            "WHERE id = ? AND run_id IS NOT NULL AND lease_until >= ?",
            (key, now),
        )
        row = await self.get(key)
        return row.run_id if row and row.running(now) else None


async def _retried(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, tried up to 4 times over about 1.5 s on an error (tenacity): a
    deletion that fails once must not leave a conversation behind."""
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(4),
        wait=tenacity.wait_exponential(multiplier=0.1, max=1.0),
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=True,
    )
    return await retrying(fn, *args)


async def _migrate(execute: Any) -> None:
    """Bring a table of the older schema up to this one (idempotent)."""
    try:
        await execute(_ADD_THREAD)
    except Exception as exc:  # the column is there already (both databases say so)
        if "thread_id" not in str(exc) and "duplicate" not in str(exc).lower():
            raise
    await execute(_MIGRATE)


class SqliteSessionStore(SessionStore):
    """Both connections run in autocommit mode: a statement is its own transaction. With
    Python's default (a transaction opened before each write, committed by a separate
    call), a write cancelled between the two left the transaction open, and its write
    lock shut every other replica out of the file ("database is locked")."""

    def __init__(self, conn: Any, saver_conn: Any, saver: Any) -> None:
        self._conn = conn
        self._saver_conn = saver_conn
        self.checkpointer = saver
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, config: SqliteStore) -> SqliteSessionStore:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = sqlite_path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await _sqlite_connect(path)
        conn.row_factory = _sqlite_row()
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(_SCHEMA)
        await _migrate(conn.execute)
        saver_conn = await _sqlite_connect(path)
        saver = AsyncSqliteSaver(saver_conn)
        await saver.setup()
        return cls(conn, saver_conn, saver)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return int(cursor.rowcount)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return list(await cursor.fetchall())

    async def close(self) -> None:
        await self._saver_conn.close()
        await self._conn.close()


async def _sqlite_connect(path: Path) -> Any:
    import aiosqlite

    conn = await aiosqlite.connect(path, timeout=30, isolation_level=None)
    await conn.execute("PRAGMA busy_timeout=30000")
    # WAL + NORMAL: a commit survives the crash of any process; only a power or OS
    # failure can lose the last commits (SQLite is the single-machine store).
    await conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _sqlite_row() -> Any:
    import aiosqlite

    return aiosqlite.Row


class PostgresSessionStore(SessionStore):
    def __init__(self, pool: Any, saver: Any) -> None:
        self._pool = pool
        self.checkpointer = saver

    @classmethod
    async def open(cls, config: PostgresStore) -> PostgresSessionStore:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        dsn = config.dsn if config.dsn is not None else _env.required(str(config.dsn_env))
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=config.pool_size,
            open=False,
            # Each connection is checked as it leaves the pool (a round trip): one the
            # server or a proxy dropped meanwhile is replaced, not handed to a turn.
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:  # the DSN may hold a password: never print it
            await pool.close()
            raise RuntimeError(f"cannot connect to PostgreSQL ({type(exc).__name__})") from None
        saver = AsyncPostgresSaver(pool)
        async with pool.connection() as conn:
            # Replicas start together; the checkpointer's migrations must run once. A
            # blocking pg_advisory_lock would deadlock: the waiting statement holds a
            # snapshot that the migrations' CREATE INDEX CONCURRENTLY waits for. Poll.
            deadline = time.monotonic() + 120
            while not (await (await conn.execute(_TRY_LOCK)).fetchone() or {}).get("locked"):
                if time.monotonic() > deadline:
                    raise RuntimeError("another replica held the schema lock for 120 s")
                await asyncio.sleep(0.2)
            try:
                await saver.setup()
                await conn.execute(_SCHEMA)
                await _migrate(conn.execute)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(724011)")
        return cls(pool, saver)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql.replace("?", "%s"), params)
            return int(cursor.rowcount)

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql.replace("?", "%s"), params)
            return list(await cursor.fetchall())

    async def close(self) -> None:
        await self._pool.close()


def sqlite_path(config: SqliteStore) -> Path:
    path = Path(config.path).expanduser()
    return path if path.is_absolute() else _env.cache_dir() / path


async def open_store(config: StoreConfig) -> SessionStore:
    if isinstance(config, PostgresStore):
        return await PostgresSessionStore.open(config)
    return await SqliteSessionStore.open(config)
