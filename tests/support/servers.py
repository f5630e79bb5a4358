"""Real servers the tests start on loopback: PostgreSQL (found on PATH or in Debian's
folders), Redis (missing either is a failure, never a skip) and vLLM's own OpenAI API
server."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.polling import wait_for


def _missing(what: str, package: str = "postgresql") -> None:
    # A failure, never a skip: `make test` installs it (scripts/system-packages.sh).
    pytest.fail(f"{what} is not installed (Debian: apt-get install {package}; make test does it)")


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
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root}"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
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
def redis(port: int) -> Iterator[str]:
    """A throwaway Redis on 127.0.0.1:port, no persistence; yields its URL."""
    server = shutil.which("redis-server")
    if server is None:
        _missing("Redis", "redis-server")
        raise AssertionError("unreachable")
    root = Path(tempfile.mkdtemp(prefix="runtime-redis-"))
    process = subprocess.Popen(
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(root),
            "--logfile",
            str(root / "log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_for_redis(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def _wait_for_redis(url: str, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    import redis as redis_client

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        return bool(redis_client.Redis.from_url(url, socket_timeout=1).ping())

    wait_for(answers, timeout_s, f"Redis at {url}", 0.1, retry=redis_client.ConnectionError)


@contextmanager
def vllm_api_server(port: int, api_key: str) -> Iterator[str]:
    """vLLM's own OpenAI API server on loopback with the tiny random model, as an
    external provider would run it; yields its base URL (ending in /v1)."""
    from runtime.config.llm import LLMAppConfig
    from runtime.llm.standalone import api_server

    config = LLMAppConfig.model_validate(
        {
            "model": {"source": "tiny-random", "served_name": "tiny-random"},
            "engine": {"max_model_len": 512, "max_num_seqs": 8},
        }
    )
    with (
        tempfile.TemporaryDirectory(prefix="vllm-server-") as tmp,
        api_server(config, port, Path(tmp) / "server.log", api_key=api_key) as url,
    ):
        yield url


def _wait_for_postgres(dsn: str, timeout_s: float = 30) -> None:
    import psycopg

    def answers() -> bool:
        with psycopg.connect(dsn, connect_timeout=2):
            return True

    wait_for(answers, timeout_s, f"PostgreSQL at {dsn}", 0.2, retry=psycopg.OperationalError)


@contextmanager
def prometheus(port: int, targets: list[str], rule_files: list[Path] = ()) -> Iterator[str]:  # type: ignore[assignment]
    """Debian's Prometheus on 127.0.0.1:port scraping ``targets`` every second; yields
    its base URL."""
    import httpx
    import yaml

    server = shutil.which("prometheus")
    if server is None:
        _missing("Prometheus", "prometheus")
        raise AssertionError("unreachable")
    root = Path(tempfile.mkdtemp(prefix="runtime-prometheus-"))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "ray", "static_configs": [{"targets": targets}]}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (root / "log").open("wb")
    process = subprocess.Popen(
        [
            server,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {(root / 'log').read_text()[-2000:]}")
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200

    try:
        wait_for(
            ready,
            30,
            interval_s=0.2,
            retry=httpx.TransportError,
            message="prometheus did not get ready in 30 s",
        )
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
