"""The LLM router's own decisions, in-process (no Ray): which model answers, what is
admitted, charged and counted, what a stream shows. Its targets here are in-memory
stand-ins for a model (named as such); the real targets are exercised on the cluster
(tests/cluster/test_gateway_routing.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtime.config.router import RouterConfig
from runtime.context import CallContext
from runtime.errors import InvalidInputError, LLMError, ModelUnavailableError, RateLimitError
from runtime.providers.fallback import FallbackChain
from runtime.routing import Limiter, LLMRouter

CTX = CallContext(tenant="acme", agent="assistant", scenario="support")


class StandInModel:
    """Answers like a model would (a stand-in: fixed text and usage), or is unavailable."""

    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up
        self.calls = 0
        self.last_body: dict[str, Any] = {}

    def _reply(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "choices": [{"message": {"role": "assistant", "content": "hi"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        }

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        self.last_body = body
        if not self.up:
            raise ModelUnavailableError(f"the model `{self.name}` is unavailable now")
        return self._reply()

    async def stream(
        self, method: str, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        self.calls += 1
        if not self.up:
            raise ModelUnavailableError(f"the model `{self.name}` is unavailable now")
        for i, word in enumerate(("hel", "lo")):
            chunk = {"model": self.name, "choices": [{"delta": {"content": word}}]}
            # As the LLM replica does: with `frames`, token chunks after the first come
            # as SSE text.
            yield f"data: {json.dumps(chunk)}\n\n" if frames and i else chunk
        if body.get("stream_options", {}).get("include_usage"):
            yield {"model": self.name, "choices": [], "usage": self._reply()["usage"]}


class Counted:
    """Records what the router meters (the real counters need Ray's metrics export)."""

    def __init__(self) -> None:
        self.charged: list[tuple[str, Any, int]] = []
        self.used: list[tuple[CallContext, str, int, int]] = []

    def charged_(self, tenant: str, model: Any, tokens: int) -> None:
        self.charged.append((tenant, model, tokens))

    def used_(self, ctx: CallContext, model: str, i: int, o: int, price: Any) -> None:
        self.used.append((ctx, model, i, o))


def _router(
    limits: dict[str, Any] | None = None, primary_up: bool = True
) -> tuple[LLMRouter, Counted, StandInModel, StandInModel]:
    config = RouterConfig.model_validate(
        {
            "models": [{"name": "a", "fallback": ["b"]}, {"name": "b"}],
            "rate_limits": limits or {},
        }
    )
    counted = Counted()
    metrics: Any = type(
        "M", (), {"charged": staticmethod(counted.charged_), "used": staticmethod(counted.used_)}
    )()
    router = LLMRouter(config, Limiter(config.rate_limits), metrics=metrics)
    a, b = StandInModel("a", up=primary_up), StandInModel("b")
    router.chains = {"a": FallbackChain([a, b]), "b": FallbackChain([b])}
    return router, counted, a, b


def test_the_model_answers_and_its_usage_is_counted_for_the_context() -> None:
    router, counted, a, b = _router()
    reply = asyncio.run(router.call(CTX, "chat", {"model": "a", "messages": []}))
    assert reply["model"] == "a" and (a.calls, b.calls) == (1, 0)
    assert counted.charged == [("acme", "a", 5)]
    assert counted.used == [(CTX, "a", 3, 2)]


def test_an_unavailable_model_falls_back_and_the_reply_names_who_answered() -> None:
    router, counted, a, b = _router(primary_up=False)
    reply = asyncio.run(router.call(CTX, "chat", {"model": "a", "messages": []}))
    assert reply["model"] == "b" and (a.calls, b.calls) == (1, 1)
    assert counted.used == [(CTX, "b", 3, 2)]


def test_a_fallback_is_taken_only_to_a_model_the_caller_may_use() -> None:
    """A key allowed `a` only: `a` down is `a`'s error, never `b`'s answer (the key's
    prompts must not reach a model, or a provider, it may not use)."""
    router, _, a, b = _router(primary_up=False)
    body = {"model": "a", "messages": []}
    with pytest.raises(ModelUnavailableError):
        asyncio.run(router.call(CTX, "chat", body, allowed=lambda m: m == "a"))
    assert (a.calls, b.calls) == (1, 0)

    async def streamed() -> list[Any]:
        return [c async for c in router.stream(CTX, "chat", body, allowed=lambda m: m == "a")]

    with pytest.raises(ModelUnavailableError):
        asyncio.run(streamed())
    assert (a.calls, b.calls) == (2, 0)
    # Allowed both: the fallback answers as before.
    reply = asyncio.run(router.call(CTX, "chat", body, allowed=lambda m: True))
    assert reply["model"] == "b"


def test_frames_pass_through_and_the_usage_chunk_is_still_read() -> None:
    """With ``frames`` (the gateway), SSE text from the model is passed on untouched, and
    the tokens are charged from the usage chunk, whether the client asked for it or not."""

    async def streamed(router: LLMRouter, body: dict[str, Any]) -> list[Any]:
        return [c async for c in router.stream(CTX, "chat", body, frames=True)]

    for usage_wanted in (True, False):
        router, counted, _, _ = _router()
        body = {"model": "a", "messages": [], "stream_options": {"include_usage": usage_wanted}}
        chunks = asyncio.run(streamed(router, body))
        assert chunks[0]["choices"][0]["delta"]["content"] == "hel"
        assert chunks[1] == 'data: {"model": "a", "choices": [{"delta": {"content": "lo"}}]}\n\n'
        assert len(chunks) == (3 if usage_wanted else 2)
        assert counted.used == [(CTX, "a", 3, 2)]


def test_an_unknown_model_is_a_404_naming_the_field() -> None:
    router, *_ = _router()
    with pytest.raises(LLMError) as err:
        asyncio.run(router.call(CTX, "chat", {"model": "nope"}))
    assert (err.value.status, err.value.type, err.value.param) == (404, "NotFoundError", "model")
    with pytest.raises(LLMError, match="`model` is required"):
        asyncio.run(router.call(CTX, "chat", {}))


def test_spent_tokens_refuse_the_next_call_and_nothing_reaches_the_model() -> None:
    router, counted, a, _ = _router({"per_tenant": {"tokens_per_minute": 4}})

    async def two() -> None:
        await router.call(CTX, "chat", {"model": "a"})  # admitted (0 of 4), charged 5
        with pytest.raises(RateLimitError, match="token limit of the tenant") as err:
            await router.call(CTX, "chat", {"model": "a"})
        assert err.value.retry_after >= 1

    asyncio.run(two())
    assert a.calls == 1 and counted.charged == [("acme", "a", 5)]


def test_a_stream_hides_its_usage_unless_asked_and_is_charged_when_it_ends() -> None:
    router, counted, *_ = _router()

    async def drain(body: dict[str, Any]) -> list[dict[str, Any]]:
        return [c async for c in router.stream(CTX, "chat", {"model": "a", **body})]

    plain = asyncio.run(drain({}))
    assert [c["choices"][0]["delta"]["content"] for c in plain] == ["hel", "lo"]
    asked = asyncio.run(drain({"stream_options": {"include_usage": True}}))
    assert asked[-1]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2}
    assert counted.charged == [("acme", "a", 5), ("acme", "a", 5)]
    with pytest.raises(LLMError, match="stream_options"):
        asyncio.run(drain({"stream_options": "yes"}))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        # OpenAI's API answers 400 for an unknown role; this one was generated for 42 s.
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"n": 16384}, "n"),
        ({"max_tokens": 10**6}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}] * 513}, "messages"),
        ({"messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),  # was a 500
        ({"max_completion_tokens": 1, "max_tokens": 10**6}, "max_tokens"),  # both are checked
    ],
)
def test_a_request_beyond_the_models_limits_is_400_before_the_model(
    body: dict[str, Any], param: str
) -> None:
    router, _, a, _ = _router()
    with pytest.raises(InvalidInputError) as err:
        asyncio.run(router.call(CTX, "chat", {"model": "a", **body}))
    assert err.value.status == 400 and err.value.param == param
    assert a.calls == 0


def test_completions_send_max_tokens_only() -> None:
    """An engine's completions route reads `max_tokens` alone: a smaller
    `max_completion_tokens` must not be what is reserved while `max_tokens` runs."""
    router, _, a, _ = _router()
    body = {"model": "a", "prompt": "x", "max_completion_tokens": 3}
    asyncio.run(router.call(CTX, "completions", body))
    assert a.last_body["max_tokens"] == 3 and "max_completion_tokens" not in a.last_body


def test_too_many_prompts_are_400() -> None:
    router, _, a, _ = _router()
    with pytest.raises(InvalidInputError, match="at most 16 prompts"):
        asyncio.run(router.call(CTX, "completions", {"model": "a", "prompt": ["x"] * 1024}))
    assert a.calls == 0


def test_a_request_without_max_tokens_gets_the_models_default() -> None:
    router, _, a, _ = _router()
    asyncio.run(router.call(CTX, "chat", {"model": "a", "messages": []}))
    assert a.last_body["max_tokens"] == 512


def test_what_a_request_may_generate_is_reserved_before_it_runs() -> None:
    """100 tokens a minute: a request that may generate 80 runs (80 charged at once, its
    5 used within them); the next that may generate 80 is refused before the model, not
    let through because some tokens were left (and then charged 80 beyond the limit)."""
    router, counted, a, _ = _router({"per_tenant": {"tokens_per_minute": 100}})
    body = {"model": "a", "messages": [], "max_tokens": 40, "n": 2}

    async def main() -> None:
        await router.call(CTX, "chat", body)
        with pytest.raises(RateLimitError, match="this request may use 80"):
            await router.call(CTX, "chat", body)
        await router.call(CTX, "chat", {**body, "max_tokens": 10})  # 20 of the 20 left

    asyncio.run(main())
    assert a.calls == 2 and counted.charged == [("acme", "a", 80), ("acme", "a", 20)]


def test_a_stream_closed_early_still_counts_its_answer() -> None:
    """Its usage chunk never came: the answer is counted, its tokens (unknown) are not."""
    router, counted, *_ = _router()

    async def first_only() -> None:
        stream = router.stream(CTX, "chat", {"model": "a"})
        await anext(stream)
        await stream.aclose()

    asyncio.run(first_only())
    assert counted.charged == [("acme", "a", 0)]
    assert counted.used == [(CTX, "a", 0, 0)]


class Restarting(StandInModel):
    """A stand-in model that is unavailable for its first ``down`` calls (a replica
    restarting), then answers."""

    def __init__(self, name: str, down: int) -> None:
        super().__init__(name)
        self.down = down

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        self.up = self.calls >= self.down
        return await super().call(method, body)

    async def stream(
        self, method: str, body: dict[str, Any], *, frames: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        self.up = self.calls >= self.down
        async for chunk in super().stream(method, body):
            yield chunk


def _restarting(
    down: int, limits: dict[str, Any] | None = None
) -> tuple[LLMRouter, Counted, Restarting]:
    router, counted, _, _ = _router(limits)
    model = Restarting("a", down)
    router.chains = {"a": FallbackChain([model])}
    return router, counted, model


def test_a_patient_call_waits_for_a_restarting_model_under_one_reservation() -> None:
    """Three calls find no replica; the fourth answers. The tenant's window is charged
    one reservation (80), not one per attempt."""
    router, counted, model = _restarting(3, {"per_tenant": {"tokens_per_minute": 100}})
    body = {"model": "a", "messages": [], "max_tokens": 40, "n": 2}
    reply = asyncio.run(router.call(CTX, "chat", body, patience_s=30))
    assert reply["model"] == "a" and model.calls == 4
    assert counted.charged == [("acme", "a", 80)]


def test_an_impatient_call_fails_at_once() -> None:
    router, _, model = _restarting(3)
    with pytest.raises(ModelUnavailableError):
        asyncio.run(router.call(CTX, "chat", {"model": "a", "messages": []}))
    assert model.calls == 1


def test_patience_runs_out() -> None:
    router, _, model = _restarting(10_000)
    with pytest.raises(ModelUnavailableError, match="unavailable"):
        asyncio.run(router.call(CTX, "chat", {"model": "a", "messages": []}, patience_s=1))
    assert 2 <= model.calls <= 8  # 0.25 s, doubling, with jitter: a few tries in 1 s


def test_a_patient_stream_waits_for_its_first_chunk_and_repeats_nothing() -> None:
    router, counted, model = _restarting(2)

    async def read() -> list[Any]:
        body = {"model": "a", "messages": []}
        return [c async for c in router.stream(CTX, "chat", body, patience_s=30)]

    chunks = asyncio.run(read())
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["hel", "lo"]
    assert model.calls == 3 and counted.used == [(CTX, "a", 3, 2)]
