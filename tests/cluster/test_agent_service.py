"""AgentService's stores on the session's real PostgreSQL (the unit tests of
AgentService, on SQLite: tests/unit/test_agent_service.py)."""

from __future__ import annotations

import asyncio


def test_postgres_stores_open_concurrently(postgres_dsn: str) -> None:
    """Replicas start together: the checkpointer's migrations run once, nobody deadlocks."""
    import psycopg

    from runtime.agents.store import open_store, session_key
    from runtime.config.agents import PostgresStore

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS concurrent_open")
        conn.execute("CREATE DATABASE concurrent_open")
    config = PostgresStore(kind="postgres", dsn=postgres_dsn.rsplit("/", 1)[0] + "/concurrent_open")

    async def main() -> int:
        stores = await asyncio.wait_for(
            asyncio.gather(*(open_store(config) for _ in range(4))), timeout=60
        )
        created = await stores[0].create("t", "a", "s1")
        seen = await stores[3].get(session_key("t", "a", "s1"))
        for store in stores:
            await store.close()
        assert created is not None and seen == created
        return len(stores)

    assert asyncio.run(main()) == 4
