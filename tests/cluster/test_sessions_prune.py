"""The periodic clean-up on a real PostgreSQL (the session's, started by the tests): the
scenario of tests/support/prune.py (on SQLite and through the command:
tests/unit/test_sessions_prune.py)."""

from __future__ import annotations

import asyncio

import pytest

from runtime.config.agents import PostgresStore
from tests.support.prune import scenario


def test_prune_on_postgres(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS prune_test")
        conn.execute("CREATE DATABASE prune_test")
    monkeypatch.setenv("PRUNE_TEST_DSN", postgres_dsn.rsplit("/", 1)[0] + "/prune_test")
    asyncio.run(scenario(PostgresStore(kind="postgres", dsn_env="PRUNE_TEST_DSN")))
