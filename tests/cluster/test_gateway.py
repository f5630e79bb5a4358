"""The gateway: authentication, scopes, OpenAI-compatible routes over the real LLM
deployments (official `openai` client), limits and health."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.support.keys import API_KEY, KEY_B, KEY_REVOKED, KEY_SCOPED
from tests.support.stack import TINY_MODEL, Stack


def _openai(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, timeout=120, max_retries=0)


def test_health_needs_no_key(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.url}/readyz", timeout=30)
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] and all(ready.json()["checks"].values())


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "missing API key"),
        ("Basic abc", "malformed"),
        ("Bearer", "malformed"),
        ("Bearer rt-not-a-key", "invalid API key"),
        (f"Bearer {KEY_REVOKED}", "revoked"),
    ],
)
def test_every_route_needs_a_valid_key(
    stack: Stack, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/agents"),
        ("POST", "/v1/agents/scripted/sessions"),
        ("GET", "/v1/agents/scripted/sessions/x/history"),
    ]:
        response = httpx.request(method, f"{stack.url}{path}", headers=headers, json={})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "authentication_error" and message in error["message"]
        assert "rt-not-a-key" not in response.text and KEY_REVOKED not in response.text


def test_openai_client_through_the_gateway(stack: Stack) -> None:
    client = _openai(stack, API_KEY)
    assert {m.id for m in client.models.list()} == {stack.model, TINY_MODEL}
    reply = client.chat.completions.create(
        model=stack.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    assert "paris" in (reply.choices[0].message.content or "").lower()
    chunks = list(
        client.chat.completions.create(
            model=TINY_MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    text = client.completions.create(model=TINY_MODEL, prompt="Once", max_tokens=3)
    assert text.usage is not None and text.usage.completion_tokens == 3


def _events(url: str, headers: dict[str, str], body: dict[str, object]) -> list[str]:
    """The ``data:`` payloads of a streamed answer, read over raw HTTP."""
    with httpx.stream("POST", url, json=body, headers=headers, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        text = "".join(reply.iter_text())
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    return [e.removeprefix("data: ") for e in events]


@pytest.mark.parametrize("usage", [True, False])
def test_the_gateways_stream_says_what_the_models_own_routes_say(stack: Stack, usage: bool) -> None:
    """The gateway passes the replica's SSE on (coalesced into fewer messages when it
    falls behind): the same events, each a whole chunk, as the model's own routes send;
    the usage chunk only when asked for."""
    body = {
        "model": TINY_MODEL,
        "messages": [{"role": "user", "content": "count to ten"}],
        "max_tokens": 24,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": usage},
    }
    auth = {"Authorization": f"Bearer {API_KEY}"}
    direct = _events(f"{stack.tiny_url}/chat/completions", {}, body)
    gateway = _events(f"{stack.url}/v1/chat/completions", auth, body)
    assert gateway[-1] == direct[-1] == "[DONE]"
    chunks = [json.loads(e) for e in gateway[:-1]]  # each event one whole chunk
    expected = [json.loads(e) for e in direct[:-1]]

    def text(of: list[dict[str, Any]]) -> str:
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in of if c["choices"])

    # The same answer (vLLM itself may merge tokens into one chunk under load, on either
    # path, so the chunks are compared by what they say).
    assert text(chunks) == text(expected) and len(text(chunks)) > 0
    reasons = [c["choices"][0].get("finish_reason") for c in chunks if c["choices"]]
    assert reasons[-1] == "length" and {c["model"] for c in chunks} == {TINY_MODEL}
    assert ("usage" in chunks[-1]) is usage
    if usage:
        assert chunks[-1]["usage"]["completion_tokens"] == 24


def test_llm_errors_pass_through_with_their_status(stack: Stack) -> None:
    client = _openai(stack, API_KEY)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[], max_tokens=1)
    for stream in (False, True):  # a bad streamed request is a 400, not a broken stream
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model=TINY_MODEL,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=-1,
                stream=stream,
            )


def test_scopes(stack: Stack) -> None:
    scoped = _openai(stack, KEY_SCOPED)
    assert [m.id for m in scoped.models.list()] == [TINY_MODEL]
    with pytest.raises(openai.PermissionDeniedError, match="may not use the model"):
        scoped.chat.completions.create(
            model=stack.model, messages=[{"role": "user", "content": "hi"}], max_tokens=1
        )
    scoped.chat.completions.create(
        model=TINY_MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    http = httpx.Client(
        base_url=f"{stack.url}/v1/agents", headers={"Authorization": f"Bearer {KEY_SCOPED}"}
    )
    assert http.get("").json() == {"agents": ["scripted"]}
    denied = http.post("/planner/sessions", json={})
    assert denied.status_code == 403 and denied.json()["error"]["type"] == "permission_error"
    assert http.post("/scripted/sessions", json={}).status_code == 201


def test_sdk_errors_for_keys(stack: Stack) -> None:
    import runtime

    with pytest.raises(runtime.AuthenticationError):
        runtime.connect(stack.url, api_key="rt-wrong").agent("scripted").session()
    with pytest.raises(runtime.PermissionDeniedError):
        runtime.connect(stack.url, api_key=KEY_SCOPED).agent("planner").session()
    with pytest.raises(ValueError, match="tenant"):
        runtime.connect(stack.url, api_key=KEY_B, tenant="someone-else")


def test_body_limits(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    big = b'{"model": "tiny-random", "prompt": "' + b"x" * 1_100_000 + b'"}'
    response = httpx.post(f"{stack.url}/v1/completions", headers=headers, content=big)
    assert response.status_code == 413
    for body in (b"{not json", b"[1, 2]"):
        response = httpx.post(f"{stack.url}/v1/chat/completions", headers=headers, content=body)
        assert response.status_code == 400 and response.json()["error"]["status"] == 400


def test_openapi_schema_is_published(stack: Stack) -> None:
    schema = httpx.get(f"{stack.url}/openapi.json").json()
    paths = set(schema["paths"])
    assert {"/v1/chat/completions", "/v1/models", "/healthz", "/readyz"} <= paths
    assert "/v1/agents/{agent}/sessions/{session_id}/stream" in paths
