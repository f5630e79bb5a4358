"""Real servers the tests start on loopback (PostgreSQL), found on PATH or in Debian's
folders. Under CI a missing server is a failure, never a skip (`.ci/run` installs them)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _missing(what: str) -> None:
    message = f"{what} is not installed (Debian: apt-get install postgresql; .ci/run does it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextmanager
def postgres(port: int) -> Iterator[str]:
    """A throwaway PostgreSQL on 127.0.0.1:port with trust auth; yields its DSN."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        _missing("PostgreSQL")
        raise AssertionError("unreachable")
    root = Path(tempfile.mkdtemp(prefix="runtime-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True, capture_output=True,
    )  # fmt: skip
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_for_postgres(dsn)
        yield dsn
    finally:
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def vllm_api_server(port: int, api_key: str) -> Iterator[str]:
    """vLLM's own OpenAI API server on loopback with the tiny random model, as an
    external provider would run it; yields its base URL (ending in /v1)."""
    import httpx

    from runtime.config.llm import LLMAppConfig
    from runtime.llm.engine_args import replica_env, server_argv
    from runtime.models.sources import resolve_model

    config = LLMAppConfig.model_validate(
        {"model": {"source": "tiny-random", "served_name": "tiny-random"},
         "engine": {"max_model_len": 512, "max_num_seqs": 8}}
    )  # fmt: skip
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        *server_argv(config, resolve_model(config.model)),
        "--host", "127.0.0.1", "--port", str(port), "--api-key", api_key,
        "--disable-uvicorn-access-log",
    ]  # fmt: skip
    log = tempfile.NamedTemporaryFile("w+", prefix="vllm-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        argv, env={**os.environ, **replica_env(config)}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                log.seek(0)
                tail = log.read()[-3000:]
                raise RuntimeError(f"vLLM server exited ({proc.returncode}):\n{tail}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("vLLM server did not become ready in 300 s")
            time.sleep(0.5)
        yield url
    finally:
        import psutil

        children = psutil.Process(proc.pid).children(recursive=True)
        proc.terminate()
        proc.wait(60)
        psutil.wait_procs(children, timeout=60)
        log.close()
        os.unlink(log.name)


def _wait_for_postgres(dsn: str, timeout_s: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
