"""Traces across the stack: a client's ``traceparent`` starts one trace that runs
through Serve's proxy, the gateway, the agent's turn, its LLM calls, tools and
checkpoints, and the model's replica. Every replica exports its spans with the
runtime's OTLP exporter (the stack's serve config turns tracing on) to the in-memory
receiver of tests/support/otlp.py."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.support.environment import SPANS
from tests.support.keys import API_KEY
from tests.support.otlp import Span
from tests.support.stack import Stack


def _traceparent() -> tuple[str, str, dict[str, str]]:
    """A client's trace: its id, the client's span id, and the header carrying them."""
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, client_span, {"traceparent": f"00-{trace_id}-{client_span}-01"}


def _by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def _ancestors(span: Span, spans: list[Span]) -> list[Span]:
    found, index = [], _by_id(spans)
    current = index.get(span.parent_id)
    while current is not None:
        found.append(current)
        current = index.get(current.parent_id)
    return found


def _named(spans: list[Span], name: str) -> list[Span]:
    found = [s for s in spans if s.name == name or s.name.startswith(name + " ")]
    assert found, f"no {name!r} span; got {sorted({s.name for s in spans})}"
    return found


def _have(spans: list[Span], names: set[str]) -> bool:
    """Every name has a span, matched as ``_named`` matches (Serve's proxy names its span
    ``proxy_http_request`` plus the route)."""
    return all(any(s.name == n or s.name.startswith(n + " ") for s in spans) for n in names)


def _connected(spans: list[Span], root: str) -> bool:
    """Every span's parent has arrived (or is ``root``, the client's span): each replica
    and proxy sends its batches on its own schedule."""
    ids = set(_by_id(spans)) | {root}
    return all(s.parent_id in ids for s in spans)


def _complete(spans: list[Span]) -> bool:
    """Every LLM call's span and its model replica's have arrived."""
    counts = [
        sum(s.name == n for s in spans)
        for n in ("llm.call", "replica_handle_request LLMServer chat")
    ]
    return len(set(counts)) == 1


@pytest.fixture(scope="module")
def client(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=stack.url, timeout=120, headers={"Authorization": f"Bearer {API_KEY}"}
    )


def _turn(client: httpx.Client, agent: str, message: str, headers: dict[str, str]) -> Any:
    session = client.post(f"/v1/agents/{agent}/sessions")
    assert session.status_code == 201, session.text
    reply = client.post(
        f"/v1/agents/{agent}/sessions/{session.json()['id']}/invoke",
        json={"message": message},
        headers=headers,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_an_agent_turn_is_one_trace_from_the_clients_traceparent(client: httpx.Client) -> None:
    trace_id, client_span, headers = _traceparent()
    result = _turn(client, "scripted", "please add", headers)
    assert result["answer"] == "2+3=5"
    names = {"agent.turn", "tool.call", "checkpoint.write", "proxy_http_request"}
    spans = SPANS.wait_until(
        trace_id,
        lambda spans: _have(spans, names) and _connected(spans, client_span),
    )

    # Serve's proxy continues the client's trace; the gateway's span is inside it.
    (proxy,) = _named(spans, "proxy_http_request")
    assert proxy.parent_id == client_span
    (gateway,) = _named(spans, "gateway POST")
    assert gateway.name == "gateway POST /v1/agents/{agent}/sessions/{session_id}/invoke"
    assert gateway.attributes["runtime.tenant"] == "local"
    assert gateway.attributes["http.response.status_code"] == 200
    assert proxy in _ancestors(gateway, spans)

    # The turn, in the agents' replica, under the gateway's call to it.
    (turn,) = _named(spans, "agent.turn")
    assert gateway in _ancestors(turn, spans)
    assert _by_id(spans)[turn.parent_id].name == "replica_handle_request AgentServer invoke"
    assert turn.attributes["runtime.agent"] == "scripted"
    assert turn.attributes["runtime.tenant"] == "local"
    assert turn.attributes["runtime.outcome"] == "ok"
    assert turn.attributes["runtime.steps"] == 3
    assert turn.resource["service.name"]  # set by the SDK (OTEL_SERVICE_NAME in clusters)

    # Its stages: two model calls around one tool call, each a child of the turn, in order.
    children = sorted((s for s in spans if s.parent_id == turn.span_id), key=lambda s: s.start)
    stages = [s.name for s in children if not s.name.startswith("checkpoint.")]
    assert stages == ["llm.call", "tool.call", "llm.call"], stages
    llm_calls = [s for s in children if s.name == "llm.call"]
    tools = [s for s in children if s.name == "tool.call"]
    assert tools[0].attributes["runtime.tool"] == "calculator"
    assert tools[0].attributes["runtime.tool.error"] is False
    assert all(s.attributes["runtime.stand_in"] for s in llm_calls)  # the scripted model
    assert all(s.attributes["gen_ai.usage.input_tokens"] > 0 for s in llm_calls)
    writes = _named(spans, "checkpoint.write")
    assert len(writes) >= 3 and all(turn in _ancestors(w, spans) for w in writes)
    assert _named(spans, "checkpoint.read")

    # Every span of the request is in the client's trace; none holds the message text
    # ($RUNTIME_LOG_CONTENT is not set).
    assert all(s.trace_id == trace_id for s in spans)
    assert not any("please add" in s.raw for s in spans)


def test_an_agents_llm_call_reaches_the_model_replica_in_the_same_trace(
    client: httpx.Client, stack: Stack
) -> None:
    """planner -> its replica's router -> SmolLM2's LLMServer, one hop, one trace: the
    call never goes back through the gateway."""
    trace_id, client_span, headers = _traceparent()
    _turn(client, "planner", "Say hello.", headers)
    names = {"agent.turn", "llm.call", "replica_handle_request LLMServer chat"}
    spans = SPANS.wait_for(trace_id, names)
    # Each replica sends its batches on its own schedule: wait for the whole trace.
    spans = SPANS.wait_until(
        trace_id, lambda s: _complete(s) and _connected(s, client_span), timeout_s=15
    )
    (turn,) = _named(spans, "agent.turn")
    calls = _named(spans, "llm.call")  # the planner's graph calls its model more than once
    models = _named(spans, "replica_handle_request LLMServer chat")
    assert len(calls) == len(models)
    # The straight path: nothing under the turn is served by the gateway.
    assert not [s for s in spans if "Gateway" in s.name and turn in _ancestors(s, spans)]
    for call in calls:
        assert turn in _ancestors(call, spans)
        assert call.attributes["gen_ai.request.model"] == stack.model
        assert call.attributes["runtime.scenario"] == "support"
        assert call.attributes["gen_ai.usage.output_tokens"] > 0
        # The call's own hop to the model's replica.
        assert len([m for m in models if call in _ancestors(m, spans)]) == 1


def test_a_chat_completion_is_traced_to_the_model(client: httpx.Client, stack: Stack) -> None:
    trace_id, client_span, headers = _traceparent()
    reply = client.post(
        "/v1/chat/completions",
        headers=headers,
        json={
            "model": stack.tiny_model,
            "max_tokens": 2,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert reply.status_code == 200, reply.text
    names = {"replica_handle_request LLMServer chat", "proxy_http_request"}
    spans = SPANS.wait_until(
        trace_id,
        lambda spans: _have(spans, names) and _connected(spans, client_span),
    )
    (gateway,) = _named(spans, "gateway POST")
    (model,) = _named(spans, "replica_handle_request LLMServer chat")
    assert gateway in _ancestors(model, spans)
    assert _ancestors(model, spans)[-1].parent_id == client_span
