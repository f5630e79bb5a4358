"""Real servers the tests start on loopback: PostgreSQL (found on PATH or in Debian's
folders), Redis (missing either is a failure, never a skip) and vLLM's own OpenAI API
server. The chaos suite restarts PostgreSQL and Redis, and pauses Redis (a blackhole:
connections taken, nothing answered), through :func:`restart_postgres`,
:func:`restart_redis` and :func:`pause_redis`."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.polling import wait_for

#: The servers started here, by port: how to stop and start them again.
_POSTGRES: dict[int, list[str]] = {}  # port -> the pg_ctl command line, less its verb
_REDIS: dict[int, tuple[list[str], list[subprocess.Popen[bytes]]]] = {}  # argv, [process]


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
    control = [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log")]
    subprocess.run([*control, "-w", "start"], check=True, capture_output=True)
    _POSTGRES[port] = control
    try:
        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        _wait_for_postgres(dsn)
        yield dsn
    finally:
        _POSTGRES.pop(port, None)
        subprocess.run([*control, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def restart_postgres(dsn: str, down_s: float) -> None:
    """Stop the PostgreSQL at ``dsn`` as a crash would (immediate: connections cut, no
    checkpoint), keep it down ``down_s``, start it again and wait until it answers."""
    control = _POSTGRES[urlsplit(dsn).port or 5432]
    subprocess.run([*control, "-m", "immediate", "stop"], check=True, capture_output=True)
    time.sleep(down_s)
    subprocess.run([*control, "-w", "start"], check=True, capture_output=True)
    _wait_for_postgres(dsn)


@contextmanager
def redis(port: int) -> Iterator[str]:
    """A throwaway Redis on 127.0.0.1:port, no persistence; yields its URL."""
    server = shutil.which("redis-server")
    if server is None:
        _missing("Redis", "redis-server")
        raise AssertionError("unreachable")
    root = Path(tempfile.mkdtemp(prefix="runtime-redis-"))
    argv = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly"]
    argv += ["no", "--dir", str(root), "--logfile", str(root / "log")]
    current = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    _REDIS[port] = (argv, current)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        _wait_for_redis(url, current[0])
        yield url
    finally:
        _REDIS.pop(port, None)
        current[0].terminate()
        current[0].wait(10)
        shutil.rmtree(root, ignore_errors=True)


def restart_redis(url: str, down_s: float) -> None:
    """Kill the Redis at ``url`` (SIGKILL: its counters are gone, as with no
    persistence in a Pod), keep it down ``down_s``, start it again, wait until it
    answers."""
    argv, current = _REDIS[urlsplit(url).port or 6379]
    current[0].kill()
    current[0].wait(10)
    time.sleep(down_s)
    current[0] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_redis(url, current[0])


def pause_redis(url: str, down_s: float) -> None:
    """Blackhole the Redis at ``url`` for ``down_s``: the process is stopped
    (SIGSTOP), so the kernel still takes connections and nothing answers."""
    _, current = _REDIS[urlsplit(url).port or 6379]
    current[0].send_signal(signal.SIGSTOP)
    try:
        time.sleep(down_s)
    finally:
        current[0].send_signal(signal.SIGCONT)


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
    """Debian's Prometheus on 127.0.0.1:port scraping ``targets`` every 5 s; yields its
    base URL.

    Ray's nodes refresh what they export every few seconds; a scrape each second only
    loads their metrics agents, and its one-second timeout fails every scrape on a busy
    machine (no series at all)."""
    import httpx
    import yaml

    server = shutil.which("prometheus")
    if server is None:
        _missing("Prometheus", "prometheus")
        raise AssertionError("unreachable")
    root = Path(tempfile.mkdtemp(prefix="runtime-prometheus-"))
    config = {
        "global": {
            "scrape_interval": "5s",
            "scrape_timeout": "5s",
            "evaluation_interval": "5s",
        },
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
