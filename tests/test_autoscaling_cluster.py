"""Autoscaling on the local cluster: a load generator raises the agents' turns, the
agent deployment (runtime.autoscaling:AgentPolicy) scales up, and back down when the
load is gone."""

from __future__ import annotations

import threading
import time
from typing import Any

import runtime
from tests.conftest import Stack


def _replicas(app: str) -> tuple[int, int]:
    """(running replicas, replicas Serve is starting or running)."""
    from ray import serve

    states = serve.status().applications[app].deployments["AgentServer"].replica_states
    return states.get("RUNNING", 0), sum(states.values())


def _wait_for(condition: Any, timeout_s: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s ({_replicas('auto')})")
        time.sleep(0.2)
    return time.monotonic() - started


def test_agents_scale_up_with_turns_and_back_down(stack: Stack) -> None:
    assert _replicas("auto") == (1, 1)
    agent = runtime.connect(app="auto").agent("scripted-auto")
    sessions = [agent.session() for _ in range(6)]
    answers: list[str] = []
    stop = threading.Event()

    def load(session: Any) -> None:  # one turn after another until told to stop
        while not stop.is_set():
            answers.append(session.invoke("six seconds").answer)

    threads = [threading.Thread(target=load, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    try:
        # 6 turns in flight, 2 per replica wanted, max 2 replicas: a second one starts.
        up = _wait_for(lambda: _replicas("auto")[1] == 2, 20, "scale up")
        _wait_for(lambda: _replicas("auto")[0] == 2, 90, "the new replica running")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert answers and set(answers) == {"done"}
    # Idle: back to one after the down delay (3 s) and the metrics' look-back.
    down = _wait_for(lambda: _replicas("auto") == (1, 1), 60, "scale down")
    assert up < 6 and down > 2
