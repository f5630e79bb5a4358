"""Durability and scale of sessions on the real cluster: replicas killed mid-session
(SQLite with the real SmolLM2 engine, PostgreSQL with the scripted stand-in), agent
placement by worker kind, and 200 concurrent sessions on one replica."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import runtime
from runtime.agents.store import session_key
from tests.support.agent_helpers import kill_replicas, replicas
from tests.support.polling import wait_for
from tests.support.stack import Stack


def test_placement_by_worker_kind(stack: Stack, ray_cluster: Any) -> None:
    """Agents and gateways on the CPU worker, LLM replicas on the GPU worker (a logical
    GPU each, the CPU engine), nothing on the head."""
    import ray

    def kind(node: dict[str, Any]) -> str | None:
        return node["Labels"].get("worker-kind")

    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    cpu = {i for i, n in nodes.items() if kind(n) == "cpu"}
    gpu = {i for i, n in nodes.items() if kind(n) == "gpu"}
    assert len(cpu) == 1 and len(gpu) == 1 and len(nodes) == 3
    for app, deployment, where in [
        ("agents", "AgentServer", cpu),
        ("one", "AgentServer", cpu),
        ("pg", "AgentServer", cpu),
        ("gateway", "Gateway", cpu),
        ("llm", "LLMServer", gpu),
        ("tiny", "LLMServer", gpu),
    ]:
        on = {a.node_id for a in replicas(app, deployment)}
        assert on and on <= where, f"{app} replicas off their worker kind"
    # Each running LLM replica holds one of the GPU worker's logical GPUs.
    gpus_in_use = ray.cluster_resources()["GPU"] - ray.available_resources().get("GPU", 0)
    assert gpus_in_use >= 2


def test_real_model_session_survives_its_replicas(stack: Stack) -> None:
    """Done-when of issue 3: a session on the real local model remembers the previous
    turn after every replica that served it is killed, mid-turn."""
    client = runtime.connect()
    session = client.agent("planner").session()
    first = session.invoke("What is the capital of France?")
    assert "paris" in first.answer.lower()
    assert first.steps == 2 and first.usage.output_tokens > 0

    events = session.stream("Tell me a long story about that city.")
    assert next(events).type == "start"
    assert next(events).type == "token"  # the real engine is generating the plan
    assert kill_replicas("agents") == 2
    with pytest.raises(runtime.AgentUnavailableError):
        list(events)

    # The interrupted turn's lease lapses (3 s in the tests); the next turn waits for
    # the replacement replicas and runs on one of them, from the last checkpoint.
    wait_for(lambda: len(replicas("agents")) == 2, timeout_s=60, what="new replicas")
    turns: list[Any] = []

    def third_turn() -> bool:
        turns.append(session.invoke("And what river flows through it?"))
        return True

    # planner's policy is reject: busy until the lease lapses
    wait_for(third_turn, 30, "the third turn", 0.5, retry=runtime.SessionBusyError)
    (third,) = turns
    assert third.answer
    history = session.history()
    assert history[0].content == "What is the capital of France?"
    assert history[1].content == first.answer
    assert history[-2].content == "And what river flows through it?"
    assert history[-1].content == third.answer


def test_postgres_sessions_survive_a_replica_kill_mid_turn(stack: Stack, postgres_dsn: str) -> None:
    import psycopg

    client = runtime.connect(app="pg")
    agent = client.agent("scripted-queue")
    session = agent.session()
    for i in range(4):  # spread over both replicas by Serve's router
        assert session.invoke(f"turn {i}").answer == f"echo: turn {i}"
    events = session.stream("tool then slow")
    assert next(e for e in events if e.type == "tool_result").tool_result is not None
    # A step's events come as it ends, its checkpoint right after: kill once the store
    # has it, while the model step after the tool runs.
    wait_for(lambda: any(m.role == "tool" for m in session.history()), 10, "the tool step")
    kill_replicas("pg")
    with pytest.raises(runtime.AgentUnavailableError):
        list(events)
    result = session.invoke("after the crash")  # takes the dead replica's session over
    assert result.answer == "echo: after the crash"
    contents = [m.content for m in session.history()]
    assert contents[:8] == [c for i in range(4) for c in (f"turn {i}", f"echo: turn {i}")]
    # The interrupted turn keeps its completed steps (the tool call and its result).
    assert contents[8:] == ["tool then slow", "", "2", "after the crash", "echo: after the crash"]
    with psycopg.connect(postgres_dsn) as conn:
        key = session_key("default", "scripted-queue", session.id)
        row = conn.execute(
            "SELECT tenant, turns, run_id, thread_id FROM runtime_sessions WHERE id = %s",
            (key,),
        ).fetchone()
        assert row is not None and row[:3] == ("default", 6, None)
        (threads,) = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = %s", (row[3],)
        ).fetchone()
        assert threads > 0


def test_a_killed_replicas_session_is_taken_over_at_once(stack: Stack, postgres_dsn: str) -> None:
    """The replica running a session's turn is killed; the other replica answers the
    next message at once (the lease, 30 s in this app, names a dead actor), instead of
    `SessionBusyError` until the lease lapses."""
    import psycopg

    session = runtime.connect(app="pg").agent("scripted").session()  # busy: reject
    assert session.invoke("hi").answer == "echo: hi"
    events = session.stream("slow")  # its model step sleeps 30 s
    assert next(events).type == "start"
    key = session_key("default", "scripted", session.id)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        (holder,) = conn.execute(
            "SELECT holder FROM runtime_sessions WHERE id = %s", (key,)
        ).fetchone() or (None,)
    assert holder and holder.startswith("serve/SERVE_REPLICA::pg#AgentServer#"), holder
    import ray

    ray.kill(ray.get_actor(holder.partition("/")[2], namespace="serve"), no_restart=True)
    with pytest.raises(runtime.AgentUnavailableError):
        list(events)
    answers: list[str] = []

    def next_turn() -> bool:  # Serve may still route one call to the dead replica
        answers.append(session.invoke("after the kill").answer)
        return True

    waited = wait_for(next_turn, 20, "the next turn", 0.2, retry=runtime.AgentUnavailableError)
    assert answers == ["echo: after the kill"] and waited < 20


def test_200_concurrent_sessions_on_one_replica(stack: Stack) -> None:
    assert len(replicas("one")) == 1
    client = runtime.connect(app="one")
    agent = client.agent("scripted")

    async def main() -> list[str]:
        sessions = await asyncio.gather(*(agent.asession() for _ in range(200)))
        results = await asyncio.gather(
            *(s.ainvoke(f"half a second #{i}") for i, s in enumerate(sessions))
        )
        return [r.answer for r in results]

    started = time.monotonic()
    answers = asyncio.run(main())
    elapsed = time.monotonic() - started
    assert answers == [f"done: half a second #{i}" for i in range(200)]
    # Each turn sleeps 0.5 s in the stand-in model: one at a time would take 100 s.
    assert elapsed < 60, f"200 turns took {elapsed:.1f} s: they did not run concurrently"
