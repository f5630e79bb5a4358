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
from dataclasses import dataclass, field
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
#: One row per turn a client sent with an idempotency key (``runs``), by the session's
#: thread (a session created again has a new thread, and no old keys): which run
#: answers it, the replica that claimed it while that run has not ended (``holder``),
#: the message's digest, and, once the run ended for good, its outcome (a run event).
_RUNS_SCHEMA = """
CREATE TABLE IF NOT EXISTS runtime_runs (
    thread TEXT NOT NULL,
    idem TEXT NOT NULL,
    run_id TEXT NOT NULL,
    holder TEXT,
    digest TEXT NOT NULL,
    outcome TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (thread, idem)
)
"""
#: How long a turn's idempotency key is remembered.
RUN_KEY_TTL_S = 86400.0
#: Rows of the schema before keys and threads (id = the session id = its thread): each
#: is moved once, in one statement, to its key, keeping its thread.
_ADD_THREAD = "ALTER TABLE runtime_sessions ADD COLUMN thread_id TEXT"
_MIGRATE = (
    "UPDATE runtime_sessions SET thread_id = id, id = tenant || '/' || agent || '/' || id "
    "WHERE thread_id IS NULL AND NOT EXISTS (SELECT 1 FROM runtime_sessions AS k "
    "WHERE k.id = runtime_sessions.tenant || '/' || runtime_sessions.agent || '/' "
    "|| runtime_sessions.id)"
)
#: The replica whose turn holds the lease (its Ray actor's name): a turn that finds
#: the session busy may take it over at once when that actor is dead.
_ADD_HOLDER = "ALTER TABLE runtime_sessions ADD COLUMN holder TEXT"
_TRY_LOCK = "SELECT pg_try_advisory_lock(724011) AS locked"
_COLUMNS = (
    "id, agent, tenant, created_at, updated_at, turns, run_id, lease_until, thread_id, holder"
)


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
    holder: str | None = None
    #: The database's clock when the row was read (lease times are the database's).
    read_at: float = field(default=0.0, compare=False)

    @property
    def session_id(self) -> str:
        """The id the client knows."""
        return self.id.rsplit("/", 1)[-1]

    def running(self) -> bool:
        """A turn held the lease when the row was read."""
        return self.run_id is not None and (self.lease_until or 0.0) >= self.read_at

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> SessionRow:
        fields = {k: row[k] for k in _COLUMNS.split(", ")}
        read_at = row["read_at"] if "read_at" in row.keys() else None  # noqa: SIM118 (sqlite3.Row)
        return cls(**fields, read_at=float(read_at or 0.0))


@dataclass(frozen=True)
class RunRecord:
    """The run answering a turn sent with an idempotency key; ``holder``: the replica
    that claimed it, until it ends; ``outcome``: its final or error event (JSON) once it
    ended for good, None while it runs or may be resumed."""

    run_id: str
    holder: str | None
    digest: str
    outcome: str | None


class SessionStore(ABC):
    """The sessions table. Lease times come from the database's clock (``_now``, a SQL
    expression: seconds since the epoch), so replicas' clocks may differ; a session's
    ``created_at``/``updated_at`` too."""

    #: The LangGraph checkpointer on the same database.
    checkpointer: Any
    #: The database's time, in seconds since the epoch, as a SQL expression.
    _now: str

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
        key, thread = session_key(tenant, agent, session_id), uuid.uuid4().hex
        rows = await self._fetch(
            "INSERT INTO runtime_sessions (id, agent, tenant, created_at, updated_at, thread_id) "
            f"VALUES (?, ?, ?, {self._now}, {self._now}, ?) ON CONFLICT (id) DO NOTHING "
            f"RETURNING {_COLUMNS}, {self._now} AS read_at",
            (key, agent, tenant, thread),
        )
        return SessionRow.of(rows[0]) if rows else None

    async def get(self, key: str) -> SessionRow | None:
        rows = await self._fetch(
            f"SELECT {_COLUMNS}, {self._now} AS read_at FROM runtime_sessions WHERE id = ?",
            (key,),
        )
        return SessionRow.of(rows[0]) if rows else None

    async def delete(self, row: SessionRow) -> bool:
        """Delete the session: its checkpoints first, then its row (a failure between
        leaves the row, and deleting again finishes the work), then its turns' keys
        (kept by thread: none is reused). Each step is retried a few times on a
        database error before the error is raised."""
        await _retried(self.checkpointer.adelete_thread, row.thread_id)
        deleted = await _retried(
            self._execute,
            "DELETE FROM runtime_sessions WHERE id = ? AND thread_id = ?",
            (row.id, row.thread_id),
        )
        await _retried(self._execute, "DELETE FROM runtime_runs WHERE thread = ?", (row.thread_id,))
        return bool(deleted)

    # -- runs by idempotency key ---------------------------------------------------

    async def claim_run(
        self, thread: str, idem: str, run_id: str, holder: str | None, digest: str
    ) -> RunRecord | None:
        """Record ``run_id`` (claimed by ``holder``) as the run of the thread's turn
        ``idem``; None when it is the first, else the record made before. Keys older
        than RUN_KEY_TTL_S are forgotten first."""
        await self._execute(
            f"DELETE FROM runtime_runs WHERE thread = ? AND created_at < {self._now} - ?",
            (thread, RUN_KEY_TTL_S),
        )
        rows = await self._fetch(
            "INSERT INTO runtime_runs (thread, idem, run_id, holder, digest, created_at) "
            f"VALUES (?, ?, ?, ?, ?, {self._now}) ON CONFLICT (thread, idem) DO NOTHING "
            "RETURNING run_id",
            (thread, idem, run_id, holder, digest),
        )
        return None if rows else await self.get_run(thread, idem)

    async def get_run(self, thread: str, idem: str) -> RunRecord | None:
        rows = await self._fetch(
            "SELECT run_id, holder, digest, outcome FROM runtime_runs "
            "WHERE thread = ? AND idem = ?",
            (thread, idem),
        )
        if not rows:
            return None
        r = rows[0]
        return RunRecord(str(r["run_id"]), r["holder"], str(r["digest"]), r["outcome"])

    async def reclaim_run(
        self, thread: str, idem: str, dead_run: str, run_id: str, holder: str | None
    ) -> bool:
        """Make ``run_id`` the turn's run in place of ``dead_run`` (which ended without
        an outcome, or whose replica died), unless another retry did first."""
        return (
            await self._execute(
                "UPDATE runtime_runs SET run_id = ?, holder = ? "
                "WHERE thread = ? AND idem = ? AND run_id = ? AND outcome IS NULL",
                (run_id, holder, thread, idem, dead_run),
            )
            == 1
        )

    async def end_run(
        self, thread: str, idem: str, run_id: str, outcome: str | None, forget: bool = False
    ) -> None:
        """The run ended: with ``outcome`` (a retry then answers it), or None (a retry
        resumes it); ``forget``: it never ran (a retry runs the turn afresh)."""
        where = "WHERE thread = ? AND idem = ? AND run_id = ?"
        params: tuple[str, ...] = (thread, idem, run_id)
        if forget:
            sql = f"DELETE FROM runtime_runs {where}"
        elif outcome is None:
            sql = f"UPDATE runtime_runs SET holder = NULL {where}"
        else:
            sql, params = (
                f"UPDATE runtime_runs SET outcome = ?, holder = NULL {where}",
                (
                    outcome,
                    *params,
                ),
            )
        await _retried(self._execute, sql, params)

    async def prune(self, idle_before: float, dry_run: bool = False) -> list[str]:
        """Delete the sessions (and their checkpoints) last used before ``idle_before``
        and running no turn; the ids deleted (or, with ``dry_run``, that would be).

        Each is deleted only if it is still idle at that moment: a session that starts a
        turn meanwhile stays.
        """
        idle = f"updated_at < ? AND (run_id IS NULL OR COALESCE(lease_until, 0) < {self._now})"
        rows = await self._fetch(
            f"SELECT id FROM runtime_sessions WHERE {idle} ORDER BY updated_at", (idle_before,)
        )
        ids = [str(r["id"]) for r in rows]
        if dry_run:
            return ids
        deleted = []
        for key in ids:
            rows = await self._fetch(
                f"DELETE FROM runtime_sessions WHERE id = ? AND {idle} RETURNING thread_id",
                (key, idle_before),
            )
            if rows:
                thread = rows[0]["thread_id"]
                await _retried(self.checkpointer.adelete_thread, thread)
                await _retried(
                    self._execute, "DELETE FROM runtime_runs WHERE thread = ?", (thread,)
                )
                deleted.append(key)
        return deleted

    async def acquire(self, key: str, run_id: str, ttl_s: float, holder: str | None = None) -> bool:
        """Take the session's lease for ``run_id`` (held by ``holder``, this replica)
        unless a live turn holds it."""
        now = self._now
        return (
            await self._execute(
                f"UPDATE runtime_sessions SET run_id = ?, lease_until = {now} + ?, holder = ?, "
                f"cancel_run = NULL, turns = turns + 1, updated_at = {now} "
                f"WHERE id = ? AND (run_id IS NULL OR lease_until < {now})",
                (run_id, ttl_s, holder, key),
            )
            == 1
        )

    async def take_over(
        self, key: str, run_id: str, ttl_s: float, holder: str | None, dead_run: str
    ) -> bool:
        """Take the lease from ``dead_run`` (whose replica is dead), if it still holds it."""
        now = self._now
        return (
            await self._execute(
                f"UPDATE runtime_sessions SET run_id = ?, lease_until = {now} + ?, holder = ?, "
                f"cancel_run = NULL, turns = turns + 1, updated_at = {now} "
                "WHERE id = ? AND run_id = ?",
                (run_id, ttl_s, holder, key, dead_run),
            )
            == 1
        )

    async def holds(self, key: str, run_id: str, margin_s: float) -> bool:
        """Whether ``run_id`` holds the session's lease for ``margin_s`` more seconds at
        least (the fence a turn passes before each checkpoint write)."""
        rows = await self._fetch(
            "SELECT 1 AS held FROM runtime_sessions "
            f"WHERE id = ? AND run_id = ? AND lease_until >= {self._now} + ?",
            (key, run_id, margin_s),
        )
        return bool(rows)

    async def release(self, key: str, run_id: str) -> None:
        await self._execute(
            "UPDATE runtime_sessions SET run_id = NULL, lease_until = NULL, cancel_run = NULL, "
            f"holder = NULL, updated_at = {self._now} WHERE id = ? AND run_id = ?",
            (key, run_id),
        )

    async def renew(self, runs: Mapping[str, str], ttl_s: float) -> dict[str, str]:
        """Extend the leases of these runs (run id -> session key); the runs to stop,
        with why: ``cancel`` (asked to: a cancel or an interrupt), ``deleted`` (their
        session is gone), ``taken`` (their lease lapsed and another turn holds it)."""
        if not runs:
            return {}
        marks = ", ".join("?" * len(runs))
        await self._lease_execute(
            f"UPDATE runtime_sessions SET lease_until = {self._now} + ? WHERE run_id IN ({marks})",
            (ttl_s, *runs),
        )
        keys = sorted(set(runs.values()))
        rows = await self._lease_fetch(
            "SELECT id, run_id, cancel_run FROM runtime_sessions "
            f"WHERE id IN ({', '.join('?' * len(keys))})",
            tuple(keys),
        )
        by_key = {str(r["id"]): r for r in rows}
        stop = {}
        for run_id, key in runs.items():
            row = by_key.get(key)
            if row is None:
                stop[run_id] = "deleted"
            elif row["run_id"] != run_id:
                stop[run_id] = "taken"
            elif row["cancel_run"] == run_id:
                stop[run_id] = "cancel"
        return stop

    async def request_cancel(self, key: str) -> str | None:
        """Ask the replica running this session's turn to stop it; that run's id."""
        await self._execute(
            "UPDATE runtime_sessions SET cancel_run = run_id "
            f"WHERE id = ? AND run_id IS NOT NULL AND lease_until >= {self._now}",
            (key,),
        )
        row = await self.get(key)
        return row.run_id if row and row.running() else None

    # The heartbeat has its own connections where the database allows (PostgreSQL): it
    # must not wait behind turns that hold every connection of the pool.
    async def _lease_execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._execute(sql, params)

    async def _lease_fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return await self._fetch(sql, params)


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
    """Bring a table of an older schema up to this one (idempotent)."""
    for statement, column in ((_ADD_THREAD, "thread_id"), (_ADD_HOLDER, "holder")):
        try:
            await execute(statement)
        except Exception as exc:  # the column is there already (both databases say so)
            if column not in str(exc) and "duplicate" not in str(exc).lower():
                raise
    await execute(_MIGRATE)


class SqliteSessionStore(SessionStore):
    """Both connections run in autocommit mode: a statement is its own transaction. With
    Python's default (a transaction opened before each write, committed by a separate
    call), a write cancelled between the two left the transaction open, and its write
    lock shut every other replica out of the file ("database is locked")."""

    _now = "((julianday('now') - 2440587.5) * 86400.0)"

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
        await conn.execute(_RUNS_SCHEMA)
        await _migrate(conn.execute)
        saver_conn = await _sqlite_connect(path)
        saver = AsyncSqliteSaver(saver_conn)
        await saver.setup()
        return cls(conn, saver_conn, saver)

    async def _run(self, sql: str, params: Sequence[Any], rows: bool) -> Any:
        """One statement run to its end even when the caller is cancelled: a statement
        left half-read keeps its transaction open, and the connection's next write then
        fails at once ("database is locked": its snapshot is stale)."""

        async def run() -> Any:
            async with self._lock:
                cursor = await self._conn.execute(sql, params)
                try:
                    return list(await cursor.fetchall()) if rows else int(cursor.rowcount)
                finally:
                    await cursor.close()

        return await asyncio.shield(run())

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._run(sql, params, rows=False))

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(await self._run(sql, params, rows=True))

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
    """Turns, checkpoints and leases share a pool; the heartbeat (``renew``) has a small
    one of its own."""

    # One reading per statement (statement_timestamp), still the database's clock.
    _now = "CAST(EXTRACT(EPOCH FROM statement_timestamp()) AS DOUBLE PRECISION)"

    def __init__(self, pool: Any, saver: Any, lease_pool: Any = None) -> None:
        self._pool = pool
        self._lease_pool = lease_pool or pool
        self.checkpointer = saver

    @classmethod
    async def open(cls, config: PostgresStore) -> PostgresSessionStore:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        dsn = config.dsn if config.dsn is not None else _env.required(str(config.dsn_env))

        def new_pool(size: int) -> AsyncConnectionPool[Any]:
            return AsyncConnectionPool(
                dsn,
                min_size=1,
                max_size=size,
                open=False,
                # Each connection is checked as it leaves the pool (a round trip): one the
                # server or a proxy dropped meanwhile is replaced, not handed to a turn.
                check=AsyncConnectionPool.check_connection,
                kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": None},
            )

        pool, lease_pool = new_pool(config.pool_size), new_pool(2)
        try:
            await pool.open(wait=True, timeout=30)
            await lease_pool.open(wait=True, timeout=30)
        except Exception as exc:  # the DSN may hold a password: never print it
            await pool.close()
            await lease_pool.close()
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
                await conn.execute(_RUNS_SCHEMA)
                await _migrate(conn.execute)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(724011)")
        return cls(pool, saver, lease_pool)

    @staticmethod
    async def _run(pool: Any, sql: str, params: Sequence[Any], rows: bool) -> Any:
        async with pool.connection() as conn:
            cursor = await conn.execute(sql.replace("?", "%s"), params)
            return list(await cursor.fetchall()) if rows else int(cursor.rowcount)

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._run(self._pool, sql, params, rows=False))

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(await self._run(self._pool, sql, params, rows=True))

    async def _lease_execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(await self._run(self._lease_pool, sql, params, rows=False))

    async def _lease_fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(await self._run(self._lease_pool, sql, params, rows=True))

    async def close(self) -> None:
        await self._pool.close()
        if self._lease_pool is not self._pool:
            await self._lease_pool.close()


def sqlite_path(config: SqliteStore) -> Path:
    path = Path(config.path).expanduser()
    return path if path.is_absolute() else _env.cache_dir() / path


async def open_store(config: StoreConfig) -> SessionStore:
    if isinstance(config, PostgresStore):
        return await PostgresSessionStore.open(config)
    return await SqliteSessionStore.open(config)
