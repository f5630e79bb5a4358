"""The cluster tier: tests that use the shared local Ray cluster and the stack deployed on
it, or start Ray themselves; every test in this folder is marked ``cluster``.

The cluster is a real multi-node local Ray cluster laid out as on KubeRay: a head
without labels or CPUs (it runs no replicas), a worker labelled ``worker-kind: cpu``
(agents and gateways select it) and one labelled ``worker-kind: gpu`` that declares
logical GPUs (LLM replicas select it and run the CPU engine there). It deploys, once
per session, the real embedded default (serve_configs/local.yaml: SmolLM2 on the CPU
engine and the example agents), the tiny random model, and agent applications for the
tests (scripted stand-in models, a one-replica app, an app on a real PostgreSQL started
here), through the same strict config check and deploy path that ``python -m runtime
run`` uses. The serve config is built by tests/support/stack.py (``stack_config``); the
process environment the cluster inherits is set by tests/support/environment.py.

The session's other servers: PostgreSQL, Redis, and vLLM's own OpenAI API server (the
external provider) behind a fault-injecting proxy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.keys import PROVIDER_KEY
from tests.support.net import free_port
from tests.support.stack import TINY_MODEL, Stack, local_config, stack_config

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.cluster)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed cluster test's report says how the machine was then: a test that waits
    on a starved machine fails for the machine, and the report should say so."""
    report = yield
    if report.failed and item.path.is_relative_to(HERE):
        report.sections.append(("machine at failure", _machine()))
    return report


def _machine() -> str:
    import psutil

    procs = list(psutil.process_iter(["pid", "name", "cmdline", "memory_info"]))
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(0.5)
    rows = []
    for p in procs:
        try:
            cmd = " ".join(p.info["cmdline"] or [p.info["name"] or "?"]).replace("\n", " ")[:100]
            rows.append((p.cpu_percent(None), p.info["memory_info"].rss >> 20, p.pid, cmd))
        except (psutil.Error, AttributeError):
            pass
    mem = psutil.virtual_memory()
    lines = [
        f"load average {psutil.getloadavg()}, memory available {mem.available >> 20} MiB"
        f" of {mem.total >> 20} MiB, swap used {psutil.swap_memory().used >> 20} MiB",
        "cpu% rss(MiB) pid command (top 12 by CPU over 0.5 s)",
    ]
    lines += [f"{c:5.0f} {r:6d} {pid} {cmd}" for c, r, pid, cmd in sorted(rows)[::-1][:12]]
    return "\n".join(lines)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    from runtime import local_ray

    # Each node exports Ray's metrics (the runtime's own, Serve's and vLLM's) on its
    # port, as KubeRay's Pods do on 8080: the observability tests scrape them.
    ports = [free_port() for _ in range(3)]
    # Every node on loopback, token auth on (tests/support/environment.py).
    loopback = local_ray.node_args()
    cluster = Cluster(
        initialize_head=True,
        # As on KubeRay (`num-cpus: 0`): Serve's controller and proxy only.
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "metrics_export_port": ports[0],
            **loopback,
        },
    )
    # Logical CPUs and GPUs (Ray's accounting, not cores): enough for every test app's
    # replicas and the autoscaled ones. Agents and gateways select the CPU worker; LLM
    # replicas (`placement: gpu-worker`) the GPU worker and a logical GPU each.
    cluster.add_node(
        num_cpus=6, labels={"worker-kind": "cpu"}, metrics_export_port=ports[1], **loopback
    )
    cluster.add_node(
        num_cpus=6,
        num_gpus=8,
        labels={"worker-kind": "gpu"},
        metrics_export_port=ports[2],
        **loopback,
    )
    cluster.metrics_ports = ports
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    from ray import serve
    from ray._private import auto_init_hook

    serve.shutdown()
    # The metrics threads of the driver's Serve handles call Ray APIs, which would start
    # a new connection (ray.init) and then exit this process when its nodes go.
    auto_init_hook.enable_auto_connect = False
    ray.shutdown()
    cluster.shutdown()
    local_ray.reap_orphan_engines()  # engines of replicas killed as the nodes went


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    from tests.support.servers import postgres

    with postgres(free_port()) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from tests.support.servers import redis

    with redis(free_port()) as url:
        yield url


@pytest.fixture(scope="session")
def vllm_provider() -> Iterator[int]:
    """vLLM's own OpenAI API server (tiny model, key required): the external provider."""
    from tests.support.servers import vllm_api_server

    port = free_port()
    with vllm_api_server(port, PROVIDER_KEY):
        yield port


@pytest.fixture(scope="session")
def proxy(vllm_provider: int) -> Any:
    """A fault-injecting proxy in front of the provider (tests/support/fault_proxy.py)."""
    from tests.support.fault_proxy import FaultProxy

    return FaultProxy(vllm_provider)


@pytest.fixture(scope="session")
def stack(
    ray_cluster: Any, postgres_dsn: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Stack:
    from runtime.deploy import deploy_config

    tmp = tmp_path_factory.mktemp("sessions")
    port = free_port()
    config = stack_config(port, tmp, postgres_dsn, redis_url)
    deploy_config(config, source="local.yaml + test apps", timeout_s=900)
    smol = next(a for a in local_config()["applications"] if a["name"] == "llm")
    return Stack(
        base_url=f"http://127.0.0.1:{port}/llm/v1",
        tiny_url=f"http://127.0.0.1:{port}/tiny/v1",
        model=smol["args"]["model"]["served_name"],
        tiny_model=TINY_MODEL,
        config=config,
        url=f"http://127.0.0.1:{port}",
    )
