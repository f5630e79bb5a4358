"""Two tiers: unit tests (no Ray) and cluster tests sharing one local Ray + Serve.

The cluster tier deploys, once per session, the real embedded default
(serve_configs/local.yaml: SmolLM2 on the CPU engine) plus a second
application serving the tiny random model, through the same strict config
check and deploy path that ``python -m runtime run`` uses.
"""

from __future__ import annotations

import copy
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime import _env

REPO = Path(__file__).resolve().parent.parent
SERVE_CONFIGS = REPO / "serve_configs"

# Set before Ray starts: token auth is on by default for new local clusters in 2.60.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RUNTIME_CACHE_DIR", str(REPO / ".cache"))
# The Serve settings `python -m runtime run` starts its clusters with.
os.environ.update(_env.serve_env())

TINY_MODEL = "tiny-random"
TINY_MAX_MODEL_LEN = 512


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tiny_app(route_prefix: str = "/tiny") -> dict[str, Any]:
    return {
        "name": "tiny",
        "route_prefix": route_prefix,
        "import_path": "runtime.apps:build_llm_app",
        "args": {
            "model": {"source": "tiny-random", "served_name": TINY_MODEL},
            "engine": {
                "max_model_len": TINY_MAX_MODEL_LEN,
                "max_num_seqs": 16,
                "chat_template": "chatml-tools",
                "tool_call_parser": "hermes",
            },
        },
    }


@dataclass(frozen=True)
class Stack:
    """The deployed test stack: base URLs and model names."""

    base_url: str  # SmolLM2 (local.yaml's application), ends in /v1
    tiny_url: str  # tiny random model, ends in /v1
    model: str
    tiny_model: str
    config: dict[str, Any]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 4, "include_dashboard": False},
    )
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    from ray import serve

    serve.shutdown()
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="session")
def stack(ray_cluster: Any) -> Stack:
    from runtime.deploy import deploy_config

    local = yaml.safe_load((SERVE_CONFIGS / "local.yaml").read_text())
    config = copy.deepcopy(local)
    port = free_port()
    config["http_options"]["port"] = port
    config["applications"].append(tiny_app())
    deploy_config(config, source="local.yaml + tiny app", timeout_s=900)
    smol = local["applications"][0]
    return Stack(
        base_url=f"http://127.0.0.1:{port}/v1",
        tiny_url=f"http://127.0.0.1:{port}/tiny/v1",
        model=smol["args"]["model"]["served_name"],
        tiny_model=TINY_MODEL,
        config=config,
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"stack", "ray_cluster"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)
