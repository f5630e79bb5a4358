"""Bad input over HTTP: OpenAI-style error bodies, right 4xx, and the deployment keeps serving."""

from __future__ import annotations

import json
import socket
from typing import Any

import httpx
import pytest
from ray import serve

from tests.support.keys import API_KEY
from tests.support.polling import wait_for
from tests.support.stack import TINY_MAX_MODEL_LEN, Stack


@pytest.fixture(scope="module")
def http(stack: Stack) -> httpx.Client:
    with httpx.Client(base_url=stack.tiny_url, timeout=60) as client:
        yield client


def _ok(http: httpx.Client, stack: Stack) -> None:
    reply = http.post(
        "/chat/completions",
        json={
            "model": stack.tiny_model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 2,
        },
    )
    assert reply.status_code == 200, reply.text


def _assert_error(reply: httpx.Response, status: int, fragment: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body["error"]) >= {"message", "type", "code"}, body
    assert body["error"]["code"] == status
    assert fragment.lower() in body["error"]["message"].lower(), body


def test_invalid_json(http: httpx.Client, stack: Stack) -> None:
    reply = http.post(
        "/chat/completions",
        content=b'{"model": "tiny-random", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    _assert_error(reply, 400, "json")
    _ok(http, stack)


def test_unknown_model(http: httpx.Client, stack: Stack) -> None:
    reply = http.post(
        "/chat/completions",
        json={"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]},
    )
    _assert_error(reply, 404, "gpt-17")
    _ok(http, stack)


def test_prompt_longer_than_context(http: httpx.Client, stack: Stack) -> None:
    long_text = "runtime " * (TINY_MAX_MODEL_LEN * 2)
    reply = http.post(
        "/chat/completions",
        json={"model": stack.tiny_model, "messages": [{"role": "user", "content": long_text}]},
    )
    _assert_error(reply, 400, "context")
    reply = http.post("/completions", json={"model": stack.tiny_model, "prompt": long_text})
    _assert_error(reply, 400, "context")
    _ok(http, stack)


@pytest.mark.parametrize("max_tokens", [0, -5])
def test_non_positive_max_tokens(http: httpx.Client, stack: Stack, max_tokens: int) -> None:
    reply = http.post(
        "/chat/completions",
        json={
            "model": stack.tiny_model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": max_tokens,
        },
    )
    _assert_error(reply, 400, "max_tokens")
    _ok(http, stack)


@pytest.mark.parametrize(
    "messages",
    [
        "hello",
        [{"content": "no role"}],
        [],
        [{"role": "user", "content": {"not": "a list or string"}}],
    ],
    ids=["not-a-list", "no-role", "empty", "bad-content"],
)
def test_malformed_messages(http: httpx.Client, stack: Stack, messages: object) -> None:
    reply = http.post("/chat/completions", json={"model": stack.tiny_model, "messages": messages})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"] == 400
    _ok(http, stack)


@pytest.mark.parametrize(
    ("path", "auth"),
    [
        ("/tiny/v1/chat/completions", b""),
        # The gateway: its SSE is passed through from the replica, in coalesced pieces.
        ("/v1/chat/completions", f"Authorization: Bearer {API_KEY}\r\n".encode()),
    ],
    ids=["direct", "gateway"],
)
def test_disconnect_mid_stream_aborts_engine_request(
    http: httpx.Client, stack: Stack, path: str, auth: bytes
) -> None:
    handle = serve.get_deployment_handle("LLMServer", app_name="tiny")
    before = handle.engine_stats.remote().result()
    max_tokens = TINY_MAX_MODEL_LEN - 32
    body = json.dumps(
        {
            "model": stack.tiny_model,
            "stream": True,
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "count"}],
        }
    ).encode()
    host, port = http.base_url.host, http.base_url.port
    sock = socket.create_connection((host, port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
        + auth
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    received = b""
    while received.count(b"data: ") < 3:  # a few tokens arrived: the request is running
        received += sock.recv(4096)
    assert b"200 OK" in received
    sock.close()  # the client goes away mid-stream

    stats: dict[str, Any] = {}

    def aborted() -> bool:
        stats.update(handle.engine_stats.remote().result())
        return not stats["unfinished_requests"]

    wait_for(aborted, 10, interval_s=0.1, fail=False)
    assert stats["unfinished_requests"] == 0
    _ok(http, stack)  # the engine also runs a step, so its scheduler figures are current
    after = handle.engine_stats.remote().result()
    assert after["running"] == 0 and after["waiting"] == 0
    generated = after["generation_tokens_total"] - before["generation_tokens_total"]
    assert generated < max_tokens, f"the aborted request ran on: {generated} tokens"
