"""vLLM's own OpenAI API server as a separate process, with the engine flags and
environment an LLM replica of the same config gets: the baseline of the latency
benchmark, and the "external provider" of the provider tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.config.llm import LLMAppConfig
from runtime.llm.engine_args import replica_env, server_argv
from runtime.models.sources import resolve_model


@contextmanager
def api_server(
    config: LLMAppConfig,
    port: int,
    log_path: Path,
    *,
    api_key: str | None = None,
    timeout_s: float = 300,
) -> Iterator[str]:
    """Start ``vllm.entrypoints.openai.api_server`` on 127.0.0.1:``port``; yield its base
    URL (ending in /v1) once ``/health`` answers; on exit stop it and wait until its
    engine process is gone too."""
    import httpx
    import psutil

    argv = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        *server_argv(config, resolve_model(config.model)),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--disable-uvicorn-access-log",
    ]
    if api_key is not None:
        argv += ["--api-key", api_key]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            argv, env={**os.environ, **replica_env(config)}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"vLLM server exited ({proc.returncode}); see {log_path}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"vLLM server not ready in {timeout_s:.0f} s; see {log_path}"
                    )
                time.sleep(0.5)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            children = psutil.Process(proc.pid).children(recursive=True)  # the engine core
            proc.terminate()
            proc.wait(60)
            psutil.wait_procs(children, timeout=60)
