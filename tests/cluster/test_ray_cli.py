"""Ray's own CLI on the embedded default, as a newcomer runs it: ``serve run
serve_configs/local.yaml`` (a new local Ray), and ``ray start --head`` + ``serve deploy``;
each brings up the model, the agents and the gateway on one plain, unlabelled Ray node
(the key from RUNTIME_API_KEY), and the SDK's agent session answers through it. Also: a
config whose replica fits no node fails the deploy with what it asked for.

Each CLI starts its own cluster beside the session's (one at a time); the shipped file
is used as it is, on a free port (8000 may be taken)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from runtime import _env
from tests.support.keys import API_KEY
from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.polling import wait_for
from tests.support.stack import Stack

RAY = str(Path(sys.executable).with_name("ray"))
SERVE = str(Path(sys.executable).with_name("serve"))


def _local_yaml(tmp_path: Path) -> tuple[Path, int]:
    config = yaml.safe_load((REPO / "serve_configs/local.yaml").read_text())
    port = free_port()
    config["http_options"]["port"] = port
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, port


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[list[str]]:
    """A CLI in its own process group, its output lines as they come; stopped (SIGINT,
    as Ctrl-C, then the group killed) on exit, its orphaned engines reaped."""
    proc = subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # what the CLI left behind
            os.killpg(proc.pid, signal.SIGKILL)
        reader.join(5)
        from runtime import local_ray

        local_ray.reap_orphan_engines()


def _env_for_cli() -> dict[str, str]:
    # A new cluster, not the session's (RAY_ADDRESS=local for ray.init); the key the
    # gateway takes from RUNTIME_API_KEY.
    return {**os.environ, "RAY_ADDRESS": "local", _env.RUNTIME_API_KEY: API_KEY}


def _agent_session_answers(url: str, lines: list[str]) -> None:
    import runtime

    def ready() -> bool:
        return httpx.get(f"{url}/readyz", timeout=10).status_code == 200

    wait_for(
        ready,
        600,
        interval_s=2,
        retry=httpx.HTTPError,
        message=f"the gateway at {url} was not ready: " + "".join(lines[-30:]),
    )
    session = runtime.connect(url, api_key=API_KEY).agent("planner").session()
    first = session.invoke("My name is Ana. Say hello.")
    second = session.invoke("What is my name?")
    assert first.answer and second.answer
    assert [m.role for m in session.history()].count("user") == 2


@pytest.mark.timeout(900)
def test_serve_run_serves_the_embedded_default(tmp_path: Path) -> None:
    path, port = _local_yaml(tmp_path)
    with _process([SERVE, "run", str(path)], _env_for_cli()) as lines:
        _agent_session_answers(f"http://127.0.0.1:{port}", lines)


@pytest.mark.timeout(900)
def test_serve_deploy_onto_ray_start_serves_the_embedded_default(tmp_path: Path) -> None:
    path, port = _local_yaml(tmp_path)
    dashboard = free_port()
    ports = {
        "--port": free_port(),
        "--dashboard-port": dashboard,
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--metrics-export-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--ray-client-server-port": free_port(),
    }
    # Unix sockets live under the temp folder: its path must stay short.
    temp = tempfile.mkdtemp(prefix="rcli", dir="/tmp")
    head = [RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
    head += ["--dashboard-host", "127.0.0.1", "--include-dashboard", "true"]
    head += ["--temp-dir", temp, "--disable-usage-stats"]
    head += [str(x) for kv in ports.items() for x in kv]
    env = _env_for_cli()
    with _process(head, env) as head_lines:
        api = f"http://127.0.0.1:{dashboard}"
        # The Serve API `serve deploy` calls, not only the dashboard: its Serve module
        # may start later (a deploy sent before it got "connection closed" once). The
        # dashboard asks for the cluster's token (tests/support/environment.py sets it).
        auth = {"Authorization": f"Bearer {os.environ['RAY_AUTH_TOKEN']}"}
        wait_for(
            lambda: (
                httpx.get(f"{api}/api/serve/applications/", headers=auth, timeout=5).status_code
                == 200
            ),
            120,
            interval_s=1,
            retry=httpx.HTTPError,
            message="ray start: no Serve API on the dashboard: " + "".join(head_lines[-30:]),
        )
        deployed = subprocess.run(
            [SERVE, "deploy", str(path), "--address", api],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        _agent_session_answers(f"http://127.0.0.1:{port}", head_lines)


def test_a_replica_no_node_can_host_fails_the_deploy_with_why(stack: Stack) -> None:
    """The strict deploy path (`python -m runtime run`, the tests): a gateway replica
    asking for more CPUs than any node has fails in ``placement_wait_s``, naming it."""
    import copy

    from runtime.deploy import DeployError, deploy_config

    config: dict[str, Any] = copy.deepcopy(stack.config)
    gateway = next(a for a in config["applications"] if a["name"] == "gateway")
    big = {
        **copy.deepcopy(gateway),
        "name": "too-big",
        "route_prefix": "/too-big",
        "deployments": [
            {
                "name": "Gateway",
                "ray_actor_options": {"num_cpus": 64, "label_selector": {"worker-kind": "cpu"}},
            }
        ],
    }
    config["applications"].append(big)
    try:
        with pytest.raises(DeployError) as err:
            deploy_config(config, source="too-big", timeout_s=120, placement_wait_s=3)
    finally:  # the stack as it was (declarative: the app is removed)
        deploy_config(stack.config, source="the test stack", timeout_s=300)
    message = str(err.value)
    assert "cannot place replicas after 3 s" in message
    assert "deployment 'Gateway' of application 'too-big' asks for CPU 64 on a node" in message
    assert "labels {'worker-kind': 'cpu'}" in message  # what the nodes offer
