"""The periodic clean-up (`python -m runtime sessions prune`, the cluster's RayCronJob):
sessions idle for N days go with their checkpoints; running, recent ones stay; a dry
run changes nothing. On SQLite, and through the command (the scenario is in
tests/support/prune.py; on the session's real PostgreSQL: tests/cluster/test_sessions_prune.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from runtime.agents.store import open_store
from runtime.config.agents import SqliteStore
from tests.support.paths import REPO
from tests.support.prune import scenario, seed


def test_prune_on_sqlite(tmp_path: Path) -> None:
    asyncio.run(scenario(SqliteStore(kind="sqlite", path=str(tmp_path / "s.sqlite"))))


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", "sessions", "prune", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_the_command(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"

    async def prepare() -> None:
        store = await open_store(SqliteStore(kind="sqlite", path=str(path)))
        await seed(store)
        await store.close()

    asyncio.run(prepare())
    dry = run_cli("--sqlite", str(path), "--idle-days", "30", "--dry-run")
    assert dry.returncode == 0 and "would delete 1" in dry.stdout, dry.stderr
    done = run_cli("--sqlite", str(path), "--idle-days", "30")
    assert done.returncode == 0 and "deleted 1" in done.stdout, done.stderr
    again = run_cli("--sqlite", str(path), "--idle-days", "30")
    assert "deleted 0" in again.stdout


def test_bad_input_is_refused_and_changes_nothing() -> None:
    unset = run_cli(
        "--postgres-dsn-env", "NO_SUCH_DSN_VAR", "--idle-days", "30", env={"NO_SUCH_DSN_VAR": ""}
    )
    assert unset.returncode == 2 and "$NO_SUCH_DSN_VAR" in unset.stderr
    zero = run_cli("--sqlite", "/nonexistent/s.sqlite", "--idle-days", "0")
    assert zero.returncode == 2 and "--idle-days must be more than 0" in zero.stderr
    neither = run_cli("--idle-days", "3")
    assert neither.returncode == 2 and "one of the arguments" in neither.stderr
