"""Secrets and prompts never leave in a log file, a span or an error body.

The test seeds them into requests to the stack: provider-style keys and JWTs as API
keys, as model names and as field names; a customer account number (the test
gateway's configured `redact_patterns`); prompts in chat completions and agent turns.
Then it reads every error body it got, every span the replicas exported, and every
file under the test cluster's Ray session logs: none holds any of them. A control
(the request id it sent, which Serve logs) shows that the files read are the ones the
replicas write to.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.environment import SPANS
from tests.support.keys import API_KEY
from tests.support.stack import SCRIPT_RULES, Stack


def _no_rule(make: Callable[[], str]) -> str:
    """``make()`` again until it names no rule of the scripted agent (a key holding
    "add" made the agent call its calculator instead of echoing: 1 run in about 200)."""
    while any(r.get("when") and r["when"] in (text := make()) for r in SCRIPT_RULES):
        pass
    return text


SEED = _no_rule(lambda: secrets.token_hex(6))
KEY = _no_rule(lambda: f"sk-proj-{SEED}{secrets.token_hex(12)}")
JWT = f"eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJ{SEED}In0.{secrets.token_urlsafe(24)}"
ACCOUNT = f"acct-{secrets.randbelow(10**8):08d}"
PROMPT = f"my private question {SEED}"
CONTROL = f"control-{SEED}"


@pytest.fixture(scope="module")
def client(stack: Stack) -> httpx.Client:
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Request-ID": CONTROL}
    return httpx.Client(base_url=stack.url, timeout=120, headers=headers)


def _session_logs() -> Path:
    import ray

    node = ray._private.worker._global_node
    assert node is not None
    return Path(node.get_session_dir_path()) / "logs"


def test_no_secret_or_prompt_in_logs_spans_or_error_bodies(
    client: httpx.Client, stack: Stack
) -> None:
    bodies: list[str] = []

    def expect(status: int, response: httpx.Response, redacted: bool = False) -> None:
        assert response.status_code == status, response.text
        bodies.append(response.text)
        if redacted:  # the body named the secret, and the redactor took it out
            assert "[REDACTED]" in response.text, response.text

    chat = {
        "messages": [{"role": "user", "content": f"{PROMPT} (key {KEY}, {ACCOUNT})"}],
        "max_tokens": 4,
    }
    # Keys and tokens as credentials: refused, never echoed.
    for credential in (KEY, JWT):
        expect(
            401,
            httpx.post(
                f"{stack.url}/v1/chat/completions",
                json=chat,
                headers={"Authorization": f"Bearer {credential}"},
            ),
        )
    # As a model name, a configured pattern as another: the error names them, redacted.
    expect(404, client.post("/v1/chat/completions", json={**chat, "model": KEY}), True)
    expect(404, client.post("/v1/chat/completions", json={**chat, "model": ACCOUNT}), True)
    # As an unknown field of an agent message.
    session = client.post("/v1/agents/scripted/sessions").json()["id"]
    invoke = f"/v1/agents/scripted/sessions/{session}/invoke"
    expect(400, client.post(invoke, json={"message": PROMPT, KEY: 1}), True)
    # An unknown scenario header.
    expect(
        400,
        client.post(
            "/v1/chat/completions",
            json={**chat, "model": stack.tiny_model},
            headers={"X-Scenario": KEY},
        ),
    )
    # The model's own routes (vLLM's, exposed at /llm in the tests): an invalid request
    # names the field, never the input; vLLM's own error naming a key is redacted.
    llm = f"{stack.base_url}/chat/completions"
    expect(
        400, httpx.post(llm, json={"model": stack.model, "messages": f"{PROMPT} {KEY}"}, timeout=60)
    )
    expect(404, httpx.post(llm, json={**chat, "model": KEY}, timeout=60), True)
    # Prompts answered: by a model, streamed and not, and in agent turns (the scripted
    # agent echoes the message in its answer: the answer, not a log, holds it).
    assert (
        client.post("/v1/chat/completions", json={**chat, "model": stack.tiny_model}).status_code
        == 200
    )
    with client.stream(
        "POST", "/v1/chat/completions", json={**chat, "model": stack.tiny_model, "stream": True}
    ) as stream:
        assert stream.status_code == 200 and stream.read()
    answer = client.post(invoke, json={"message": f"{PROMPT} {KEY}"}).json()
    assert answer["answer"].startswith("echo: ")
    planner = client.post("/v1/agents/planner/sessions").json()["id"]
    reply = client.post(
        f"/v1/agents/planner/sessions/{planner}/invoke",
        json={"message": f"{PROMPT}. Reply with one word."},
    )
    assert reply.status_code == 200, reply.text

    seeds = {"key": KEY, "jwt": JWT, "account": ACCOUNT, "prompt": PROMPT}
    for body in bodies:
        assert not [n for n, s in seeds.items() if s in body], body

    time.sleep(3)  # the replicas' span batches (every 0.5 s here) and log lines land
    spans = SPANS.all()
    assert any(s.attributes.get("runtime.agent") == "planner" for s in spans)
    for span in spans:
        assert not [n for n, s in seeds.items() if s in span.raw], span.raw

    logs = _session_logs()
    files = [p for p in logs.rglob("*") if p.is_file()]
    assert len(files) > 10
    control_seen = False
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        leaked = [n for n, s in seeds.items() if s in text]
        assert not leaked, f"{leaked} in {path}"
        control_seen = control_seen or (CONTROL in text and "/serve/replica_" in str(path))
    assert control_seen, "no replica log names the request id sent: the wrong files?"
