"""The agent routes of the gateway: status codes, error bodies, SSE framing, tenants
from keys (a tenant header from the client changes nothing), and a client that hangs
up mid-stream."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlparse

import httpx
import pytest

from tests.support.keys import API_KEY, KEY_B
from tests.support.polling import wait_for
from tests.support.stack import Stack


def _client(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{stack.url}/v1/agents",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


@pytest.fixture
def agents(stack: Stack) -> httpx.Client:
    return _client(stack, API_KEY)


def _session(agents: httpx.Client) -> str:
    response = agents.post("/scripted/sessions", json={})
    assert response.status_code == 201
    return str(response.json()["id"])


def test_errors_are_json_with_a_type(agents: httpx.Client) -> None:
    sid = _session(agents)
    cases = [
        (agents.post(f"/scripted/sessions/{sid}/invoke", content=b"{not json"), 400),
        (agents.post(f"/scripted/sessions/{sid}/invoke", json={}), 400),
        (agents.post(f"/scripted/sessions/{sid}/invoke", json={"message": 5}), 400),
        (agents.post(f"/scripted/sessions/{sid}/invoke", json={"message": "x", "y": 1}), 400),
        (agents.post("/scripted/sessions/nope/invoke", json={"message": "x"}), 404),
        (agents.post("/nobody/sessions", json={}), 404),
        (agents.post("/scripted/sessions", json={"id": "bad id"}), 400),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["status"] == status and error["type"] and error["message"]
    assert agents.get(f"/scripted/sessions/{sid}").json()["turns"] == 0


def test_sse_framing(agents: httpx.Client) -> None:
    sid = _session(agents)
    with agents.stream("POST", f"/scripted/sessions/{sid}/stream", json={"message": "add"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        body = r.read().decode()
    frames = [f for f in body.split("\n\n") if f]
    names = [f.split("\n")[0].removeprefix("event: ") for f in frames]
    assert names[0] == "start" and names[-1] == "final"
    final = json.loads(frames[-1].split("\n")[1].removeprefix("data: "))
    assert final["type"] == "final" and final["result"]["answer"] == "2+3=5"


def test_stream_of_a_busy_session_is_a_409_not_a_stream(agents: httpx.Client) -> None:
    sid = _session(agents)
    with agents.stream("POST", f"/scripted/sessions/{sid}/stream", json={"message": "slow"}):
        wait_for(lambda: agents.get(f"/scripted/sessions/{sid}").json()["running"])
        busy = agents.post(f"/scripted/sessions/{sid}/stream", json={"message": "hi"})
        assert busy.status_code == 409
        assert busy.json()["error"]["type"] == "session_busy"
        agents.post(f"/scripted/sessions/{sid}/cancel")


def test_tenants_come_from_keys_not_headers(agents: httpx.Client, stack: Stack) -> None:
    as_b = _client(stack, KEY_B)
    sid = _session(as_b)
    spoof = {"X-Runtime-Tenant": "tenant-b"}  # the local key's tenant is "local"
    for response in (
        agents.get(f"/scripted/sessions/{sid}", headers=spoof),
        agents.get(f"/scripted/sessions/{sid}/history", headers=spoof),
        agents.post(f"/scripted/sessions/{sid}/invoke", json={"message": "x"}, headers=spoof),
        agents.post(f"/scripted/sessions/{sid}/cancel", headers=spoof),
        agents.delete(f"/scripted/sessions/{sid}", headers=spoof),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "session_not_found"
    assert as_b.get(f"/scripted/sessions/{sid}").status_code == 200


def test_hanging_up_mid_stream_cancels_the_run(agents: httpx.Client, stack: Stack) -> None:
    sid = _session(agents)
    url = urlparse(stack.url)
    body = json.dumps({"message": "tool then slow"}).encode()
    request = (
        f"POST /v1/agents/scripted/sessions/{sid}/stream HTTP/1.1\r\n"
        f"Host: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {API_KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(request)
        received = b""
        while b"event: tool_result" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the stream early"
            received += chunk
    wait_for(
        lambda: not agents.get(f"/scripted/sessions/{sid}").json()["running"],
        timeout_s=10,
        what="the run to be cancelled after the client hung up",
    )
    history = agents.get(f"/scripted/sessions/{sid}/history").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "tool"]


def test_a_turn_sent_again_with_its_idempotency_key_runs_once(agents: httpx.Client) -> None:
    """A client that lost the answer sends the turn again with its `Idempotency-Key`:
    the first run's result comes back, and the conversation holds the turn once."""
    sid = _session(agents)
    sent = {"json": {"message": "add"}, "headers": {"Idempotency-Key": "turn-1"}}
    first = agents.post(f"/scripted/sessions/{sid}/invoke", **sent)  # type: ignore[arg-type]
    again = agents.post(f"/scripted/sessions/{sid}/invoke", **sent)  # type: ignore[arg-type]
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["run_id"] == first.json()["run_id"]
    history = agents.get(f"/scripted/sessions/{sid}/history").json()["messages"]
    assert [m["content"] for m in history] == ["add", "", "5", "2+3=5"]
    # Streamed again: its start and final events, the first run's.
    with agents.stream("POST", f"/scripted/sessions/{sid}/stream", **sent) as response:  # type: ignore[arg-type]
        events = [
            json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")
        ]
    assert [e["type"] for e in events] == ["start", "final"]
    assert events[-1]["result"]["run_id"] == first.json()["run_id"]
    bad = agents.post(
        f"/scripted/sessions/{sid}/invoke",
        json={"message": "add"},
        headers={"Idempotency-Key": "not a key!"},
    )
    assert bad.status_code == 400 and "idempotency key" in bad.json()["error"]["message"]
