"""The gateway's LLM router, limits in Redis and JWTs, on the local cluster.

A second gateway (``gw2``, two replicas, counters in a real Redis on loopback) routes
to the self-hosted tiny model and to an external provider played by vLLM's own OpenAI
server behind a fault-injecting proxy (tests/support/fault_proxy.py), with fallbacks both ways.
The main gateway (memory counters) answers the concurrency, request and token limits,
the official `openai` client and LangChain's `ChatOpenAI`, and a schemathesis run.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

import runtime
from runtime.gateway.auth import key_hash, new_key
from tests.support.issuer import AUDIENCE, ISSUER, ISSUER_KEYS, write_jwks
from tests.support.keys import (
    API_KEY,
    KEY_FEW_TOKENS,
    KEY_ONE_AT_A_TIME,
    KEY_THREE_PER_MINUTE,
    PROVIDER_KEY,
    PROVIDER_KEY_ENV,
)
from tests.support.net import free_port
from tests.support.paths import REPO
from tests.support.stack import ON_CPU_WORKER, TINY_MODEL, Stack, tiny_app

REDIS_ENV = "RUNTIME_TEST_REDIS_URL"
KEY_LIMITED = new_key()  # tenant-r: six requests per minute, counted in Redis
KEY_TOKENS = new_key()  # tenant-t: 40 LLM tokens per minute, counted in Redis
HI = [{"role": "user", "content": "hi"}]


def _gw2(proxy_port: int, redis_url: str, jwks: Path) -> dict[str, Any]:
    upstream = f"http://127.0.0.1:{proxy_port}/v1"
    fast = {"max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    timeouts = {"connect_s": 2, "first_byte_s": 3, "total_s": 30}
    return {
        "name": "gw2",
        "route_prefix": "/gw2",
        "import_path": "runtime.apps:build_gateway_app",
        "args": {
            "models": [
                {"name": TINY_MODEL, "app": "tiny", "fallback": ["external-tiny"]},
                {"name": "external-tiny", "provider": "upstream", "fallback": [TINY_MODEL]},
                {"name": "external-only", "provider": "upstream"},
                {"name": "cold-model", "app": "cold", "fallback": ["external-tiny"]},
                {"name": "ext-down", "provider": "down", "fallback": [TINY_MODEL]},
                {"name": "ext-down-only", "provider": "down"},
                {"name": "ext-quota", "provider": "quota", "fallback": [TINY_MODEL]},
            ],
            "providers": [
                {
                    "name": "upstream",
                    "base_url": upstream,
                    "api_key_env": PROVIDER_KEY_ENV,
                    "models": {"external-tiny": TINY_MODEL, "external-only": TINY_MODEL},
                    "timeouts": timeouts,
                    "retries": fast,
                },
                {
                    "name": "down",
                    "base_url": f"http://127.0.0.1:{free_port()}/v1",
                    "retries": {**fast, "max_attempts": 2},
                    "circuit": {"failure_threshold": 2, "open_s": 600},
                },
                {
                    "name": "quota",
                    "base_url": upstream,
                    "api_key_env": PROVIDER_KEY_ENV,
                    "models": {"ext-quota": TINY_MODEL},
                    "retries": fast,
                    "rate_limit": {"requests_per_minute": 2},
                },
            ],
            "auth": {
                "local_key_env": "RUNTIME_API_KEY",
                "keys": [
                    {"id": "r", "tenant": "tenant-r", "sha256": key_hash(KEY_LIMITED)},
                    {"id": "t", "tenant": "tenant-t", "sha256": key_hash(KEY_TOKENS)},
                ],
                "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": str(jwks)},
            },
            "rate_limits": {
                "storage_url_env": REDIS_ENV,
                "tenants": {
                    "tenant-r": {"requests_per_minute": 6},
                    "tenant-t": {"tokens_per_minute": 40},
                },
            },
        },
        "deployments": [
            {
                "name": "Gateway",
                "num_replicas": 2,
                "ray_actor_options": {
                    **ON_CPU_WORKER,
                    "runtime_env": {
                        "env_vars": {REDIS_ENV: redis_url, PROVIDER_KEY_ENV: PROVIDER_KEY}
                    },
                },
            }
        ],
    }


def _cold() -> dict[str, Any]:
    """The tiny model scaled to zero: no replica until something wakes it."""
    app = tiny_app(route_prefix=None)
    app["name"] = "cold"
    app["args"]["model"]["served_name"] = "cold-model"
    app["deployments"] = [
        {
            "name": "LLMServer",
            "autoscaling_config": {"min_replicas": 0, "initial_replicas": 0, "max_replicas": 1},
        }
    ]
    return app


@pytest.fixture(scope="module")
def gw2(stack: Stack, proxy: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Adds the second gateway to the running stack (the other apps stay as they are)."""
    from runtime.deploy import deploy_config

    jwks = write_jwks(tmp_path_factory.mktemp("jwks") / "jwks.json")
    config = copy.deepcopy(stack.config)
    config["applications"] += [_gw2(proxy.port, redis_url, jwks), _cold()]
    deploy_config(config, source="test stack + gw2", timeout_s=300)
    return f"{stack.url}/gw2"


@pytest.fixture
def faults(proxy: Any) -> Any:
    proxy.plan()
    proxy.connections = 0
    return proxy


def _client(base: str, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, timeout=120, max_retries=0)


def _chat(client: openai.OpenAI, model: str, **kw: Any) -> Any:
    return client.chat.completions.create(**{"model": model, "messages": HI, "max_tokens": 4, **kw})


# -- the router ------------------------------------------------------------------------


def test_models_list_self_hosted_and_external(gw2: str) -> None:
    models = {m.id: m.owned_by for m in _client(gw2).models.list()}
    assert models[TINY_MODEL] == "self-hosted" and models["external-tiny"] == "upstream"


def test_external_provider_through_the_gateway(gw2: str, faults: Any) -> None:
    client = _client(gw2)
    reply = _chat(client, "external-only")
    assert reply.model == "external-only" and reply.usage and reply.usage.completion_tokens == 4
    chunks = list(_chat(client, "external-only", stream=True))
    assert chunks and all(c.model == "external-only" for c in chunks)
    assert all(c.usage is None for c in chunks)  # not asked for: not passed on
    text = client.completions.create(model="external-only", prompt="Once", max_tokens=3)
    assert text.usage is not None and text.usage.completion_tokens == 3
    assert faults.connections == 3


def test_provider_retries_then_falls_back_to_self_hosted(gw2: str, faults: Any) -> None:
    client = _client(gw2)
    faults.plan("500", "drop")  # two failed attempts, the third passes
    assert _chat(client, "external-tiny").model == "external-tiny"
    assert faults.connections == 3
    faults.plan("500", "429", "500")  # every attempt fails: the self-hosted model answers
    faults.connections = 0
    assert _chat(client, "external-tiny").model == TINY_MODEL
    assert faults.connections == 3
    faults.plan("delay:5")  # slower than first_byte_s: timed out, retried
    faults.connections = 0
    assert _chat(client, "external-tiny").model == "external-tiny"
    assert faults.connections == 2


def test_self_hosted_without_replica_falls_back_to_external(gw2: str, faults: Any) -> None:
    from ray import serve

    client = _client(gw2)
    assert _chat(client, "cold-model").model == "external-tiny"
    streamed = list(_chat(client, "cold-model", stream=True))
    assert streamed and streamed[0].model == "external-tiny"
    cold = serve.status().applications["cold"].deployments["LLMServer"]
    assert cold.replica_states.get("RUNNING", 0) == 0  # scaled to zero all along


def test_circuit_opens_and_the_fallback_answers(gw2: str) -> None:
    client = _client(gw2)
    # No fallback: the provider's failures are a 503 with a clear body.
    with pytest.raises(openai.InternalServerError) as err:
        _chat(client, "ext-down-only")
    assert err.value.status_code == 503 and "failed 2 attempt(s)" in str(err.value)
    # Both gateway replicas trip their breaker (2 failures each), then it is open.
    messages = []
    for _ in range(6):
        with pytest.raises(openai.InternalServerError) as err:
            _chat(client, "ext-down-only")
        messages.append(str(err.value))
    assert any("circuit is open" in m for m in messages)
    # With a fallback, the self-hosted model answers.
    assert _chat(client, "ext-down").model == TINY_MODEL


def test_provider_quota_sends_calls_to_the_fallback(gw2: str, faults: Any) -> None:
    client = _client(gw2)
    models = [_chat(client, "ext-quota").model for _ in range(4)]
    assert models == ["ext-quota", "ext-quota", TINY_MODEL, TINY_MODEL]


def test_bad_requests_are_not_retried_elsewhere(gw2: str, faults: Any) -> None:
    client = _client(gw2)
    with pytest.raises(openai.BadRequestError):  # the provider refuses it
        client.chat.completions.create(
            model="external-tiny", messages=HI, max_tokens=1, temperature=-1
        )
    assert faults.connections == 1
    # Outside the model's request limits: refused by the router, never sent.
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="external-tiny", messages=HI, max_tokens=-1)
    assert faults.connections == 1


# -- limits ----------------------------------------------------------------------------


def test_request_limit_is_shared_by_two_replicas_through_redis(gw2: str, redis_url: str) -> None:
    from ray import serve

    replicas = serve.status().applications["gw2"].deployments["Gateway"].replica_states
    assert replicas.get("RUNNING") == 2
    headers = {"Authorization": f"Bearer {KEY_LIMITED}"}
    statuses, retry_after = [], []
    with httpx.Client(base_url=gw2, headers=headers) as http:
        for _ in range(10):
            response = http.get("/v1/models")
            statuses.append(response.status_code)
            if response.status_code == 429:
                retry_after.append(int(response.headers["retry-after"]))
                error = response.json()["error"]
                assert (
                    error["type"] == "rate_limit_error"
                    and "6 requests per minute" in (error["message"])
                )
    assert statuses == [200] * 6 + [429] * 4
    assert all(1 <= s <= 60 for s in retry_after)
    import redis

    assert redis.Redis.from_url(redis_url).keys("runtime*tenant-r*")


def test_token_limit(gw2: str) -> None:
    client = _client(gw2, KEY_TOKENS)
    answered = 0
    with pytest.raises(openai.RateLimitError, match="40 LLM tokens per minute") as err:
        for _ in range(5):
            _chat(client, TINY_MODEL, max_tokens=16)
            answered += 1
    assert answered >= 1
    assert 1 <= int(err.value.response.headers["retry-after"]) <= 60


def test_request_limit_in_memory(stack: Stack) -> None:
    client = _client(stack.url, KEY_THREE_PER_MINUTE)
    for _ in range(3):
        client.models.list()
    with pytest.raises(openai.RateLimitError, match="key: 3 requests per minute"):
        client.models.list()


def test_concurrency_limit_per_tenant(stack: Stack) -> None:
    agent = runtime.connect(stack.url, api_key=KEY_ONE_AT_A_TIME).agent("scripted")
    first, second = agent.session(), agent.session()
    results: list[Any] = []
    slow = threading.Thread(target=lambda: results.append(first.invoke("half a second")))
    slow.start()
    time.sleep(0.2)
    with pytest.raises(runtime.RateLimitError, match="1 requests in flight"):
        second.invoke("hello")
    slow.join()
    assert results[0].answer == "done: half a second"
    assert second.invoke("hello").answer == "echo: hello"  # the slot came back


def test_agents_llm_calls_count_against_the_tenants_tokens(stack: Stack) -> None:
    """The planner's SmolLM2 calls go through the gateway's router under the tenant: its
    first call is admitted (0 of 1 token spent) and charged, its second is refused."""
    session = runtime.connect(stack.url, api_key=KEY_FEW_TOKENS).agent("planner").session()
    with pytest.raises(runtime.RateLimitError, match="refused: token limit of the tenant"):
        session.invoke("Say hi.")
    assert [m.role for m in session.history()] == ["user"]  # kept; reads need no tokens
    # The agent's first call was charged to the tenant: its own calls are refused now.
    with pytest.raises(openai.RateLimitError, match="token limit of the tenant"):
        _chat(_client(stack.url, KEY_FEW_TOKENS), TINY_MODEL)


@pytest.mark.parametrize("retry_s", [0, 60])
def test_serve_back_pressure_is_a_clear_503(stack: Stack, retry_s: float) -> None:
    """`narrow` takes one request and queues one (max_queued_requests): the rest are
    refused by Serve at once, and the gateway says so. With the SDK's default retries,
    every turn is answered (each retry carries its turn's idempotency key)."""
    client = runtime.connect(stack.url, api_key=API_KEY, retry_s=retry_s)
    agent = client.agent("scripted-narrow")
    sessions = [agent.session() for _ in range(5)]
    outcomes: list[Any] = []

    def turn(session: Any) -> None:
        try:
            outcomes.append(session.invoke("half a second").answer)
        except runtime.AgentError as err:
            outcomes.append(err)

    threads = [threading.Thread(target=turn, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answered = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, runtime.AgentUnavailableError)]
    if retry_s:
        assert answered == ["done: half a second"] * 5, outcomes
        return
    assert len(answered) + len(refused) == 5 and answered and refused, outcomes
    assert all("saturated" in r.message for r in refused)


# -- JWT -------------------------------------------------------------------------------


def test_jwt_through_the_gateway(gw2: str) -> None:
    token = ISSUER_KEYS.token(scope=f"model:{TINY_MODEL}", tenant="jwt-tenant")
    assert [m.id for m in _client(gw2, token).models.list()] == [TINY_MODEL]
    with pytest.raises(openai.PermissionDeniedError):
        _chat(_client(gw2, token), "external-tiny")
    for bad in (
        ISSUER_KEYS.token(exp=int(time.time()) - 100),
        ISSUER_KEYS.token(aud="x"),
        ISSUER_KEYS.token(key=ISSUER_KEYS.ec, kid="r1", alg="ES256"),
    ):
        response = httpx.get(f"{gw2}/v1/models", headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401 and bad not in response.text
        assert response.json()["error"]["message"].startswith("invalid token")


# -- clients ---------------------------------------------------------------------------


def test_langchain_chat_openai(stack: Stack, gw2: str) -> None:
    from langchain_openai import ChatOpenAI

    for base, model in ((stack.url, TINY_MODEL), (gw2, "cold-model")):
        llm = ChatOpenAI(
            base_url=f"{base}/v1", api_key=API_KEY, model=model, max_tokens=5, max_retries=0
        )
        reply = llm.invoke("Hello")
        assert isinstance(reply.content, str) and reply.usage_metadata
        assert reply.usage_metadata["output_tokens"] == 5
        chunks = list(llm.stream("Hello"))
        assert len(chunks) >= 2 and "".join(str(c.content) for c in chunks)


def test_schemathesis_finds_no_server_errors(stack: Stack) -> None:
    """Generated requests to every published operation: none answers 5xx."""
    st = str(Path(sys.executable).parent / "st")
    command = [
        st,
        "run",
        f"{stack.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--max-examples",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "7",
        "--request-timeout",
        "60",
        "--no-color",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated and int(generated[1]) > 100 and generated[1] == generated[2], done.stdout
