"""What a hostile key holder sends the gateway: crafted names, deep and broken bodies.
Each is answered 4xx, and no answer repeats more than a short prefix of what was sent
(the redactor's time on such input: benchmarks/hostile_inputs.py)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.keys import KEY_B, KEY_SCOPED
from tests.support.stack import TINY_MODEL, Stack

#: A name that made the redactor quadratic (it rescanned from every dash).
CRAFTED = "key-" * 10_000


def _post(stack: Stack, key: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return httpx.post(f"{stack.url}{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text[:300]
    message: str = response.json()["error"]["message"]
    assert len(response.content) < 600, len(response.content)
    return message


@pytest.mark.parametrize(("key", "status"), [(KEY_B, 404), (KEY_SCOPED, 403)])
def test_a_crafted_model_name_is_echoed_as_a_short_prefix(
    stack: Stack, key: str, status: int
) -> None:
    """A key that may use every model learns the name does not exist; a key scoped to
    one model is refused before the lookup (it learns nothing about other models)."""
    body = {"model": CRAFTED, "messages": [{"role": "user", "content": "hi"}]}
    message = _error(_post(stack, key, "/v1/chat/completions", json=body), status)
    assert f"({len(CRAFTED)} chars)" in message


def test_a_crafted_agent_name_is_echoed_as_a_short_prefix(stack: Stack) -> None:
    name = "key-" * 2_000  # 8 KB: inside the HTTP server's limit for a request line
    message = _error(_post(stack, KEY_B, f"/v1/agents/{name}/sessions", json={}), 404)
    assert f"({len(name)} chars)" in message
    message = _error(_post(stack, KEY_SCOPED, f"/v1/agents/{name}/sessions", json={}), 403)
    assert f"({len(name)} chars)" in message


def test_many_unknown_fields_are_named_briefly(stack: Stack) -> None:
    body = {f"field-{i}-" + "x" * 200: 1 for i in range(500)}
    message = _error(_post(stack, KEY_B, "/v1/agents/scripted/sessions", json=body), 400)
    assert message.startswith("unknown field(s):") and message.endswith("…")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        # Deeper than the interpreter's stack: was a 500 (RecursionError).
        (b'{"model": "x", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
        # Deeper than any OpenAI body needs.
        (b'{"model": "x", "messages": ' + b"[" * 200 + b"]" * 200 + b"}", "nested deeper"),
        (b'{"model": "\xff\xfe"}', "not valid JSON"),
    ],
)
def test_deep_and_broken_bodies_are_400(stack: Stack, content: bytes, message: str) -> None:
    assert message in _error(_post(stack, KEY_B, "/v1/chat/completions", content=content), 400)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Scenario": "key-" * 25_000}, 400),  # one 100 KB header: no such scenario
        ({"Authorization": "Bearer " + "key-" * 25_000}, 401),  # a 100 KB key
        # 200 KB in many headers: Serve's proxy (uvicorn with httptools) caps no header
        # size, so it serves them; the Ingress in front caps them (docs/security.md).
        ({f"X-Pad-{i}": "pad-" * 250 for i in range(200)}, 200),
    ],
    ids=["one-huge", "huge-key", "many"],
)
def test_huge_headers_are_answered_without_an_echo(
    stack: Stack, headers: dict[str, str], status: int
) -> None:
    body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    sent = {"Authorization": f"Bearer {KEY_B}", **headers}
    response = httpx.post(f"{stack.url}/v1/chat/completions", headers=sent, json=body, timeout=30)
    assert response.status_code == status, response.text[:300]
    assert "key-key-key" not in response.text and "pad-pad-pad" not in response.text


def test_the_gateway_still_answers(stack: Stack) -> None:
    body = {"model": TINY_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    assert _post(stack, KEY_B, "/v1/chat/completions", json=body).status_code == 200
