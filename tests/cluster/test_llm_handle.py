"""The LLM deployment through a Serve deployment handle: no HTTP hop."""

from __future__ import annotations

import pytest
from ray import serve

from runtime import LLMError
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def handle(stack: Stack) -> serve.handle.DeploymentHandle:
    return serve.get_deployment_handle("LLMServer", app_name="tiny")


def _chat(model: str, **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


def test_handle_chat(handle: serve.handle.DeploymentHandle, stack: Stack) -> None:
    reply = handle.chat.remote(_chat(stack.tiny_model, max_tokens=5)).result()
    assert reply["object"] == "chat.completion"
    assert reply["usage"]["completion_tokens"] == 5
    assert reply["choices"][0]["message"]["role"] == "assistant"


def test_handle_chat_stream(handle: serve.handle.DeploymentHandle, stack: Stack) -> None:
    gen = handle.options(stream=True).chat_stream.remote(
        _chat(stack.tiny_model, max_tokens=6, stream_options={"include_usage": True})
    )
    chunks = list(gen)
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(deltas) >= 2
    assert chunks[-1]["usage"]["completion_tokens"] == 6


def test_handle_completions(handle: serve.handle.DeploymentHandle, stack: Stack) -> None:
    reply = handle.completions.remote(
        {"model": stack.tiny_model, "prompt": "The", "max_tokens": 4}
    ).result()
    assert reply["usage"]["completion_tokens"] == 4
    chunks = list(
        handle.options(stream=True).completions_stream.remote(
            {"model": stack.tiny_model, "prompt": "The", "max_tokens": 4}
        )
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_handle_models(handle: serve.handle.DeploymentHandle, stack: Stack) -> None:
    listing = handle.models.remote().result()
    assert [m["id"] for m in listing["data"]] == [stack.tiny_model]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "nope", "messages": [{"role": "user", "content": "x"}]}, 404, "nope"),
        ({"model": "tiny-random", "messages": "not a list"}, 400, "messages"),
        (
            {
                "model": "tiny-random",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 0,
            },
            400,
            "max_tokens",
        ),
    ],
)
def test_handle_errors_are_typed(
    handle: serve.handle.DeploymentHandle, body: dict, status: int, fragment: str
) -> None:
    with pytest.raises(LLMError) as info:
        handle.chat.remote(body).result()
    assert info.value.status == status
    assert fragment in info.value.message


def test_handle_stream_error_is_typed(handle: serve.handle.DeploymentHandle) -> None:
    gen = handle.options(stream=True).chat_stream.remote(
        {"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    with pytest.raises(LLMError) as info:
        list(gen)
    assert info.value.status == 404


def test_autoscaling_stats_come_from_the_engine(
    handle: serve.handle.DeploymentHandle, stack: Stack
) -> None:
    """What runtime.autoscaling:LLMPolicy reads: the engine's own queue and KV-cache
    figures; no GPU memory on the CPU engine (NVML finds no GPU)."""
    from runtime import autoscaling

    handle.chat.remote(_chat(stack.tiny_model, max_tokens=2)).result()  # the engine has run
    stats = handle.record_autoscaling_stats.remote().result()
    assert set(stats) == {
        autoscaling.ENGINE_RUNNING,
        autoscaling.ENGINE_WAITING,
        autoscaling.KV_CACHE_USAGE,
    }
    assert all(isinstance(v, float) and v >= 0 for v in stats.values())
    assert stats[autoscaling.KV_CACHE_USAGE] <= 1
