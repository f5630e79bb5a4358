"""The chaos suite: constant mixed load through the gateway while replicas, engines, a
node, PostgreSQL and Redis fail.

Short form (in ``make test``): an agent replica killed, then the gateway's replica,
under turns over HTTP, chat and session creation. Full form (``make chaos``,
``RUNTIME_CHAOS_FULL=1``): longer windows, also turns by handles on PostgreSQL and
streams left by their client, Redis blackholed (5 s) and restarted, PostgreSQL
restarted mid-turn, the tiny model's engine process and replica, SmolLM2's replica (a
worker runs `planner` turns on SmolLM2 meanwhile), every agent replica at once, the
gateway again, and the CPU worker node (a new one is added); the results go to
benchmarks/results/chaos.*. With the clients' default retries (the SDK's; the openai
client's two) no turn may be lost or run twice, every agent turn and session creation
must succeed (the short form: 99 % of turns), and no stream a client left may stay in
the engine. The full form also holds chat and streams to 99.9 %, and each fault's
longest gap without a success to its restart time plus 5 s."""

from __future__ import annotations

import copy
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

from runtime import local_ray
from tests.support.chaos import (
    Fault,
    Load,
    engine_left,
    inject,
    kill_engine,
    kill_node,
    outage,
    report,
    write,
)
from tests.support.keys import API_KEY
from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.servers import pause_redis, restart_postgres, restart_redis
from tests.support.stack import TINY_MODEL, Stack

FULL = os.environ.get("RUNTIME_CHAOS_FULL") == "1"
#: The full form's tiny model runs on two replicas, as docs/fault-tolerance.md
#: recommends where chat must ride out an engine restart (one replica of a model is one
#: point of failure; the previous full run measured what that costs).
TINY_REPLICAS = 2
Inject = Callable[[], Fault]


def _faults(ray_cluster: Any, postgres_dsn: str, redis_url: str) -> list[Inject]:
    """The faults in order; each call injects one and returns when it is over (the
    killed piece replaced, the server answering again)."""
    short: list[Inject] = [
        functools.partial(inject, "agents", "AgentServer", 2, 1),
        functools.partial(inject, "gateway", "Gateway", 1, 1),
    ]
    servers: list[Inject] = [
        lambda: outage("blackhole Redis 5 s", lambda: pause_redis(redis_url, 5)),
        lambda: outage("restart Redis (down 2 s)", lambda: restart_redis(redis_url, 2)),
        lambda: outage("restart PostgreSQL (down 3 s)", lambda: restart_postgres(postgres_dsn, 3)),
    ]
    cpu_node = {
        "num_cpus": 6,
        "labels": {"worker-kind": "cpu"},
        # A new port: the killed node's metrics agent may hold its old one a while.
        "metrics_export_port": free_port(),
        **local_ray.node_args(),
    }
    extra: list[Inject] = [
        functools.partial(kill_engine, "tiny", TINY_REPLICAS),
        functools.partial(inject, "tiny", "LLMServer", TINY_REPLICAS, 1),
        functools.partial(inject, "llm", "LLMServer", 1, 1),
        functools.partial(inject, "agents", "AgentServer", 2, None),
        functools.partial(inject, "gateway", "Gateway", 1, 1),
        functools.partial(kill_node, ray_cluster, "cpu", cpu_node),
    ]
    return short + (servers + extra if FULL else [])


def _scale_tiny(stack: Stack, replicas: int) -> None:
    from runtime.deploy import deploy_config

    config = copy.deepcopy(stack.config)
    tiny = next(a for a in config["applications"] if a["name"] == "tiny")
    tiny["deployments"] = [{"name": "LLMServer", "num_replicas": replicas}]
    deploy_config(config, source=f"the test stack, the tiny model on {replicas}", timeout_s=900)


# Requests that take under a second when nothing fails; a planner turn on SmolLM2 takes
# about a minute, so its gaps are bounded below by its own length and only recorded.
_SHORT = ("turn", "pg-turn", "session", "chat", "stream")


def _long_gaps(result: dict[str, Any]) -> dict[str, float]:
    """The windows (and kinds) whose longest gap without a success is longer than the
    fault's restart time plus 5 s: the issue's bound."""
    return {
        f"{name}: {kind}": m[kind]["longest_gap_s"]
        for name, m in result["windows"].items()
        if m.get("restored_s") is not None
        for kind in _SHORT
        if kind in m and m[kind]["longest_gap_s"] > m["restored_s"] + 5
    }


# The full form runs for about 15 minutes (an engine reloads in about two under load).
@pytest.mark.timeout(2400 if FULL else 600)
def test_load_rides_out_faults(
    stack: Stack, ray_cluster: Any, postgres_dsn: str, redis_url: str
) -> None:
    if FULL:
        _scale_tiny(stack, TINY_REPLICAS)
    load = Load(stack.url, API_KEY, TINY_MODEL)
    threads = load.start(model_agent="planner" if FULL else None, pg_app="pg" if FULL else None)
    began = time.monotonic()
    faults = []
    settle_s = 30 if FULL else 5
    failed: Exception | None = None
    try:
        time.sleep(30 if FULL else 8)  # the fault-free baseline
        for fault in _faults(ray_cluster, postgres_dsn, redis_url):
            faults.append(fault())
            time.sleep(settle_s)
    except Exception as exc:  # a fault that could not be injected: report what ran
        failed = exc
    finally:
        load.finish(threads)
    result = report(load, faults, began, time.monotonic())
    result["engine_left"] = engine_left("tiny") if FULL else None
    if FULL:
        write(result, REPO / "benchmarks/results", "chaos" if failed is None else "chaos-failed")
    if failed is not None:
        raise failed
    total = result["total"]
    assert result["integrity"] == {"lost": 0, "run_twice": 0}, result["integrity"]
    # The full run's figures are recorded with every turn answered; the short form's
    # 150-200 turns allow one failure (one CI run saw 1 of 182, its error unknown then:
    # the message now names the errors).
    least = 1.0 if FULL else 0.99
    for kind in ("turn", "session", *(["pg-turn"] if FULL else [])):
        m = total[kind]
        assert m["success_rate"] >= least, (kind, m["success_rate"], m["errors"])
    if FULL:  # on SmolLM2's one replica, killed: its engine reloads for about 2 minutes,
        # close to a turn's 120 s budget; recorded, and all agent turns held to 99.9 %
        kinds = ("turn", "pg-turn", "model-turn")
        ok, sent = (sum(total[k][f] for k in kinds) for f in ("succeeded", "requests"))
        assert total["model-turn"]["succeeded"] > 0 and ok >= 0.999 * sent, (ok, sent)
    assert total["turn"]["succeeded"] >= 10, total["turn"]
    for fault in faults:
        assert fault.restored_s == fault.restored_s, f"{fault.name}: not replaced"  # not nan
    if FULL:  # streams a client left are dropped by the engine (none still unfinished)
        assert total["abandon"]["succeeded"] > 0 and result["engine_left"] == 0, result
        ok, sent = (sum(total[k][f] for k in ("chat", "stream")) for f in ("succeeded", "requests"))
        assert ok >= 0.999 * sent, (ok, sent, total["chat"]["errors"], total["stream"]["errors"])
        assert not _long_gaps(result), _long_gaps(result)

    # The short form does not hold chat to a share (the full form: 99.9 %): its few
    # dozen requests and the openai client's two retries (about 1.5 s) against a
    # gateway that takes about 10 s to come back make one failure a large share.
    assert total["chat"]["requests"] > 0 and total["stream"]["requests"] > 0
