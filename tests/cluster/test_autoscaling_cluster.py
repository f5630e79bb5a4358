"""Autoscaling on the local cluster, driven by load generators: the agent deployment
on its turns (AgentPolicy); an LLM deployment on its engine's queue and, ahead of it,
on its agents' backlog (AgentLLMPolicy, one policy for an application with both); an
LLM deployment on KV-cache pressure alone (LLMPolicy). Each scales back down when idle."""

from __future__ import annotations

import threading
import time
from typing import Any

import runtime
from tests.support.polling import wait_for
from tests.support.stack import Stack

#: How often the tests look at Serve's replica states.
POLL_S = 0.2


#: A new CPU-engine replica starts while the load runs on the same two cores: the scaling
#: decision is asserted within 30 s; the engine's start-up gets up to this long (seen to
#: take over 120 s on this machine with the whole test stack deployed).
NEW_LLM_S = 240


def _replicas(app: str, deployment: str = "AgentServer") -> tuple[int, int]:
    """(running replicas, replicas Serve is starting or running)."""
    from ray import serve

    states = serve.status().applications[app].deployments[deployment].replica_states
    return states.get("RUNNING", 0), sum(states.values())


class Load:
    """Clients each sending one call after another until stopped."""

    def __init__(self, call: Any, clients: int) -> None:
        self.results: list[Any] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.results.append(call())
                except BaseException as exc:  # reported by stop()
                    self.errors.append(exc)
                    return

        self._threads = [threading.Thread(target=loop) for _ in range(clients)]
        for t in self._threads:
            t.start()

    def stop(self) -> list[Any]:
        self._stop.set()
        for t in self._threads:
            t.join()
        assert not self.errors, self.errors[:3]
        return self.results


def turns(app: str, agent: str, clients: int) -> Load:
    """Clients each holding a session and sending six-second turns one after another."""
    handle = runtime.connect(app=app).agent(agent)
    sessions = iter([handle.session() for _ in range(clients)])
    mine = threading.local()

    def turn() -> str:
        if not hasattr(mine, "session"):
            mine.session = next(sessions)
        return str(mine.session.invoke("six seconds").answer)

    return Load(turn, clients)


def test_agents_scale_up_with_turns_and_back_down(stack: Stack) -> None:
    assert _replicas("auto") == (1, 1)
    load = turns("auto", "scripted-auto", clients=6)
    try:
        # 6 turns in flight, 2 per replica wanted, max 2 replicas: a second one starts.
        up = wait_for(lambda: _replicas("auto")[1] == 2, 20, "scale up", POLL_S)
        wait_for(lambda: _replicas("auto")[0] == 2, 90, "the new replica running", POLL_S)
    finally:
        answers = load.stop()
    assert answers and set(answers) == {"done"}
    # Idle: back to one after the down delay (3 s) and the metrics' look-back.
    down = wait_for(lambda: _replicas("auto") == (1, 1), 60, "scale down", POLL_S)
    assert up < 6 and down > 2


def _tiny_chat(model: str, prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
    }


def test_llm_scales_ahead_of_its_agents_backlog(stack: Stack) -> None:
    """The `duo` application: agents and their own LLM under AgentLLMPolicy. Six turns
    in progress ask for 6 sequences at 4 per LLM replica: the LLM scales to 2 though
    no request has reached it (the scripted agent makes no LLM call)."""
    assert _replicas("duo", "LLMServer") == (1, 1) and _replicas("duo") == (1, 1)
    load = turns("duo", "scripted-duo", clients=6)
    try:
        wait_for(lambda: _replicas("duo", "LLMServer")[1] == 2, 20, "the LLM scales up", POLL_S)
        wait_for(lambda: _replicas("duo")[1] == 2, 20, "the agents scale up", POLL_S)
        wait_for(
            lambda: _replicas("duo", "LLMServer")[0] == 2, NEW_LLM_S, "the new LLM replica", POLL_S
        )
    finally:
        answers = load.stop()
    assert answers and set(answers) == {"done"}
    wait_for(lambda: _replicas("duo", "LLMServer") == (1, 1), 60, "the LLM scales down", POLL_S)
    wait_for(lambda: _replicas("duo") == (1, 1), 60, "the agents scale down", POLL_S)


def test_llm_scales_on_its_engine_queue(stack: Stack) -> None:
    """The `duo` LLM under load of its own: 12 clients, 4 sequences per replica wanted."""
    from ray import serve

    wait_for(lambda: _replicas("duo", "LLMServer") == (1, 1), 60, "one LLM replica", POLL_S)
    handle = serve.get_deployment_handle("LLMServer", app_name="duo")
    body = _tiny_chat("duo-tiny", "Count to a hundred.", max_tokens=200)
    load = Load(lambda: handle.chat.remote(body).result(), clients=12)
    try:
        wait_for(lambda: _replicas("duo", "LLMServer")[1] == 2, 30, "the LLM scales up", POLL_S)
        wait_for(
            lambda: _replicas("duo", "LLMServer")[0] == 2, NEW_LLM_S, "the new LLM replica", POLL_S
        )
    finally:
        replies = load.stop()
    assert replies and all(r["usage"]["completion_tokens"] == 200 for r in replies)
    wait_for(lambda: _replicas("duo", "LLMServer") == (1, 1), 60, "the LLM scales down", POLL_S)
    assert _replicas("duo") == (1, 1)  # the agents had no turns: they did not move


def test_kv_cache_pressure_alone_scales_the_llm(stack: Stack) -> None:
    """The `kvp` LLM: its queue target (1000 per replica) is out of reach of 3 clients;
    their long prompts fill more of the KV cache than its target: it scales."""
    from ray import serve

    from runtime import autoscaling
    from tests.support.stack import KVP_TARGET

    assert _replicas("kvp", "LLMServer") == (1, 1)
    handle = serve.get_deployment_handle("LLMServer", app_name="kvp")
    body = _tiny_chat("kvp-tiny", " ".join(["word"] * 120), max_tokens=150)
    peak = [0.0]
    loaded = threading.Event()

    def sample() -> None:  # while requests run (after a reply, the cache may be empty)
        while not loaded.is_set():
            stats = handle.record_autoscaling_stats.remote().result()
            peak[0] = max(peak[0], stats[autoscaling.KV_CACHE_USAGE])
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    load = Load(lambda: handle.chat.remote(body).result(), clients=3)
    sampler.start()
    try:
        wait_for(lambda: _replicas("kvp", "LLMServer")[1] == 2, 30, "the LLM scales up", POLL_S)
    finally:
        load.stop()
        loaded.set()
        sampler.join(10)
    assert peak[0] > KVP_TARGET  # the engine's own figure went over the target
    wait_for(lambda: _replicas("kvp", "LLMServer") == (1, 1), 60, "the LLM scales down", POLL_S)
