"""`python -m runtime run` end to end, as a user runs it: its own new local Ray
cluster, HAProxy direct ingress, the official client, then Ctrl-C (SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import openai
import pytest
import yaml

from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.polling import wait_for
from tests.support.stack import TINY_MODEL, tiny_app


def _metrics(port: int) -> str:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:
        return ""


def test_run_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    config = {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "applications": [tiny_app(route_prefix="/", placement=None)],  # one node: any
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    # The session's environment: Ray's token auth on, with the tests' token.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "run",
            str(path),
            "--ingress",
            "haproxy",
            "--metrics-port",
            str(metrics_port),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C to stop." in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(300), "".join(lines[-40:])
        output = "".join(lines)
        assert f"serving at http://127.0.0.1:{port}/v1" in output
        assert "WARNING: --ingress haproxy" in output  # its replica ports: every interface
        # Progress while it deploys: each application's state as it changes, the time.
        assert "  tiny: RUNNING (" in output and "Started in " in output, output

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=60)
        reply = client.chat.completions.create(
            model=TINY_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.usage is not None and reply.usage.completion_tokens == 4
        chunks = list(
            client.chat.completions.create(
                model=TINY_MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=4,
                stream=True,
            )
        )
        assert chunks[-1].choices[0].finish_reason == "length"
        # Prometheus can scrape the local stack: the engine's metrics, through Ray.
        wait_for(
            lambda: "ray_vllm_time_to_first_token_seconds" in _metrics(metrics_port),
            60,
            "vLLM's metrics on the metrics port",
            interval_s=1,
        )
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        reader.join(5)
    assert code == 0, "".join(lines[-40:])
    assert "Stopping: shutting down Serve and Ray" in "".join(lines)
    with pytest.raises(openai.APIConnectionError):  # nothing listens any more
        wait_for(lambda: client.models.list() is None, 10, "the endpoint to close", 0.5)
