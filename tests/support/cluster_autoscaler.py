"""Cluster autoscaling on Ray's fake multi-node provider (run as its own process).

A head with no CPUs and an autoscaler (v2) whose node types mirror the KubeRay worker
groups: ``cpu-worker`` (label ``worker-kind: cpu``) and ``gpu-worker`` (``worker-kind:
gpu``, one logical GPU). The provider starts each "node" as a real raylet on this
machine. The scenario deploys, through the project's config check and deploy path, an
agent application and an LLM application (tiny model, ``placement: gpu-worker``) whose
replicas no node can take; the autoscaler must add one worker of each group and Serve
place each replica on its kind; once the applications are deleted, the idle workers
must go. Prints one JSON line with what it saw; exit status 0 when all of it held.

``ray.cluster_utils.AutoscalingCluster`` is broken in the 2.60 wheel (its template
``example.yaml`` is missing, and the ``fake_multinode`` provider type reads its defaults
from it) and its ``start()`` runs ``ray stop --force``, which would kill every Ray on the
machine (the test session's cluster too). This script writes its own config, names the
fake provider's class as an ``external`` provider, starts the head with ``ray start
--block`` on a free port, and on exit kills only the processes of its own cluster
(those that name its GCS address).

    python -m tests.support.cluster_autoscaler [--idle-timeout-s 6]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime import local_ray
from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.polling import wait_for

FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"


def autoscaling_config(gcs_address: str, idle_timeout_s: float) -> dict[str, Any]:
    worker = {"node_config": {}, "min_workers": 0, "max_workers": 1}
    return {
        "cluster_name": "fake-kuberay",
        "max_workers": 2,
        "idle_timeout_minutes": idle_timeout_s / 60,
        "upscaling_speed": 1.0,
        "provider": {
            # The fake provider as an "external" one: the "fake_multinode" type loads
            # its defaults from the example.yaml the 2.60 wheel lacks.
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,
            "head_node_id": FAKE_HEAD_NODE_ID,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            # As on KubeRay: the head runs no replicas (`num-cpus: 0`).
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu-worker": {**worker, "resources": {"CPU": 2}, "labels": {"worker-kind": "cpu"}},
            "gpu-worker": {
                **worker,
                "resources": {"CPU": 2, "GPU": 1},
                "labels": {"worker-kind": "gpu"},
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def serve_config(http_port: int, sessions: Path) -> dict[str, Any]:
    agent = {
        "name": "helper",
        "factory": "runtime.agents.examples:assistant",
        "llm": {"kind": "scripted", "rules": [{"steps": [{"answer": "ok"}]}]},
    }
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": http_port},
        "applications": [
            {
                "name": "agents",
                "route_prefix": None,
                "import_path": "runtime.apps:build_agent_app",
                "args": {
                    "agents": [agent],
                    "sessions": {"store": {"kind": "sqlite", "path": str(sessions)}},
                },
            },
            {
                "name": "llm",
                "route_prefix": None,
                "import_path": "runtime.apps:build_llm_app",
                "args": {
                    "model": {"source": "tiny-random"},
                    "placement": "gpu-worker",
                    "engine": {"max_model_len": 256, "max_num_seqs": 4},
                },
            },
        ],
    }


def kill_cluster(gcs_address: str, head: subprocess.Popen[bytes]) -> None:
    """Stop this cluster's processes only: the head's, then any that name its GCS."""
    import psutil

    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            head.kill()
    port = gcs_address.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        mine = gcs_address in cmdline or f"127.0.0.1:{port}" in cmdline
        if mine and proc.info["pid"] != os.getpid():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def worker_nodes() -> dict[str, list[str]]:
    """Alive worker nodes by their ``worker-kind`` label: kind -> node ids."""
    import ray

    kinds: dict[str, list[str]] = {}
    for node in ray.nodes():
        kind = node["Labels"].get("worker-kind")
        if node["Alive"] and kind:
            kinds.setdefault(kind, []).append(node["NodeID"])
    return kinds


def scenario(gcs_address: str, idle_timeout_s: float) -> dict[str, Any]:
    import ray
    from ray import serve

    from runtime.deploy import deploy_config
    from tests.support.agent_helpers import replicas

    ray.init(address=gcs_address, log_to_driver=False)
    seen: dict[str, Any] = {"workers_before": worker_nodes()}
    assert seen["workers_before"] == {}, "the cluster starts with its head alone"
    started = time.monotonic()
    config = serve_config(free_port(), Path(tempfile.mkdtemp()) / "sessions.sqlite")
    deploy_config(config, source="autoscaling scenario", timeout_s=300, wait_for_http=False)
    seen["deployed_s"] = round(time.monotonic() - started, 1)
    nodes = worker_nodes()
    seen["workers_serving"] = {k: len(v) for k, v in nodes.items()}
    seen["placed"] = {
        "agents": sorted({r.node_id in nodes.get("cpu", []) for r in replicas("agents")}),
        "llm": sorted({r.node_id in nodes.get("gpu", []) for r in replicas("llm", "LLMServer")}),
    }
    serve.delete("agents")
    serve.delete("llm")
    removed = wait_for(
        lambda: worker_nodes() == {}, idle_timeout_s + 120, "idle workers removed", interval_s=0.5
    )
    seen["workers_removed_after_s"] = round(removed, 1)
    serve.shutdown()
    ray.shutdown()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-timeout-s", type=float, default=6.0)
    ns = parser.parse_args()
    # The session's token when run by the tests; a token of its own when run alone.
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = free_port()
    gcs_address = f"{local_ray.LOOPBACK}:{port}"
    config = Path(tempfile.mkdtemp()) / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(gcs_address, ns.idle_timeout_s)))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        "RAY_enable_autoscaler_v2": "1",
        "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
        "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
        **local_ray.auth_env(),  # the token: tests/support/environment.py's, inherited
    }
    ray = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [
            ray,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--node-ip-address={local_ray.LOOPBACK}",
            "--num-cpus=0",
            f"--autoscaling-config={config}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    os.environ.update(local_ray.auth_env())
    result: dict[str, Any] = {}
    try:
        wait_for(lambda: _gcs_up(gcs_address), 60, "the head", interval_s=0.5)
        result = scenario(gcs_address, ns.idle_timeout_s)
        result["ok"] = result["workers_serving"] == {"cpu": 1, "gpu": 1} and result["placed"] == {
            "agents": [True],
            "llm": [True],
        }
    except Exception as exc:
        result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        kill_cluster(gcs_address, head)
    print(json.dumps(result), flush=True)
    return 0 if result.get("ok") else 1


def _gcs_up(address: str) -> bool:
    import socket

    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


if __name__ == "__main__":
    sys.exit(main())
