"""Metrics as operators get them: a real Prometheus (Debian's, started here) scrapes
every node's Ray metrics port of the local stack, and after traffic through the
gateway, PromQL answers for the gateway, the agents, the LLM engine (vLLM's own
metrics through Ray) and Serve, with bounded labels only."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

import runtime
from tests.support.keys import KEY_B
from tests.support.net import free_port
from tests.support.polling import wait_for
from tests.support.stack import TINY_MODEL, Stack

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def prom(ray_cluster: Any, stack: Stack) -> Iterator[str]:
    from tests.support.observability import RULE_FILES
    from tests.support.servers import prometheus

    targets = [f"127.0.0.1:{port}" for port in ray_cluster.metrics_ports]
    with prometheus(free_port(), targets, RULE_FILES) as url:
        yield url


def query(url: str, promql: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert reply["status"] == "success", reply
    return list(reply["data"]["result"])


def eventually(url: str, promql: str, timeout_s: float = 60) -> list[dict[str, Any]]:
    """The query's series once one has a value above 0 (Ray exports every few seconds)."""
    found: list[dict[str, Any]] = []

    def has_value() -> bool:
        found[:] = query(url, promql)
        return any(float(s["value"][1]) > 0 for s in found)

    wait_for(has_value, timeout_s, interval_s=1, fail=False)
    if not any(float(s["value"][1]) > 0 for s in found):
        raise AssertionError(
            f"no series with a value for {promql} in {timeout_s} s; "
            f"the scrape targets: {_targets(url)}"
        )
    return found


def _targets(url: str) -> list[dict[str, Any]]:
    """Each target's health and last error, as Prometheus saw them."""
    reply = httpx.get(f"{url}/api/v1/targets", timeout=10).json()
    return [
        {k: t.get(k) for k in ("scrapeUrl", "health", "lastError", "lastScrapeDuration")}
        for t in reply["data"]["activeTargets"]
    ]


def test_metrics_of_every_stage_reach_prometheus(stack: Stack, prom: str) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY_B, timeout=60)
    client.chat.completions.create(
        model=TINY_MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    result = runtime.connect(stack.url, api_key=KEY_B).agent("scripted").session().invoke("add")
    assert result.answer == "2+3=5"

    for route in ("/v1/chat/completions", "/v1/agents/{agent}/sessions/{session_id}/invoke"):
        eventually(prom, f'ray_runtime_gateway_requests_total{{tenant="tenant-b",route="{route}"}}')
    eventually(prom, 'ray_runtime_gateway_llm_tokens_total{tenant="tenant-b"}')
    eventually(
        prom, 'ray_runtime_agent_runs_total{agent="scripted",tenant="tenant-b",outcome="ok"}'
    )
    eventually(prom, 'ray_runtime_agent_stage_seconds_count{agent="scripted",stage="tool"}')
    eventually(prom, 'ray_runtime_agent_stage_seconds_count{agent="scripted",stage="llm"}')
    eventually(prom, 'ray_runtime_agent_run_steps_count{agent="scripted"}')
    # The engine's own figures, exported by vLLM's Ray stat logger.
    ttft = eventually(
        prom, f'ray_vllm_time_to_first_token_seconds_count{{model_name="{TINY_MODEL}"}}'
    )
    assert ttft
    eventually(prom, f'ray_vllm_generation_tokens_total{{model_name="{TINY_MODEL}"}}')
    eventually(prom, "ray_vllm_request_success_total")
    # Serve's own, with the same scrape.
    eventually(prom, "ray_serve_num_http_requests_total")


def test_labels_are_bounded(stack: Stack, prom: str) -> None:
    """No session, run or request id becomes a label of the runtime's metrics."""
    eventually(prom, "ray_runtime_agent_runs_total")
    allowed = {
        "__name__",
        "tenant",
        "route",
        "status",
        "limit",
        "model",
        "agent",
        "outcome",
        "stage",
        "direction",
        "provider",
        "failed",
        "answered",
        "le",
        "scenario",
        "decision",  # tool_choice.auto: decide's call | model | error
        # Ray's and Serve's own.
        "Component",
        "NodeAddress",
        "SessionName",
        "Version",
        "WorkerId",
        "application",
        "deployment",
        "replica",
        "instance",
        "job",
        "otel_scope_name",
        "otel_scope_schema_url",
        "otel_scope_version",
    }
    series = query(prom, '{__name__=~"ray_runtime_.*"}')
    assert series
    for s in series:
        labels = s["metric"]
        assert set(labels) <= allowed, labels
        for key in ("tenant", "route", "agent", "model", "scenario"):
            assert not HEX_ID.match(labels.get(key, "")), labels


def test_every_dashboard_and_alert_expression_runs(stack: Stack, prom: str) -> None:
    """Prometheus parses and evaluates each of them against the stack's series."""
    from tests.support.observability import alert_exprs, dashboard_exprs

    for expr in dashboard_exprs() + alert_exprs():
        promql = expr.replace("$__rate_interval", "1m")
        reply = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert reply["status"] == "success", (expr, reply)
    # And rates move: more traffic on a series Prometheus has already seen (a series
    # first seen at its current value has no increase yet).
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=KEY_B, timeout=60)
    series = 'ray_runtime_gateway_requests_total{route="/v1/models",tenant="tenant-b"}'
    client.models.list()
    eventually(prom, series)
    for _ in range(3):
        client.models.list()
    eventually(prom, f"sum(increase({series}[10m]))")


def moving(
    url: str,
    promql: str,
    traffic: Callable[[], object],
    timeout_s: float = 120,
    parts: tuple[str, ...] = (),
) -> None:
    """Send ``traffic`` every few seconds until ``promql`` has a value above 0; on a
    timeout the message holds each of ``parts`` (the rule's terms) as Prometheus has it."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        traffic()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(float(s["value"][1]) > 0 for s in query(url, promql)):
                return
            time.sleep(1)
    terms = {part: query(url, part) for part in parts}
    raise AssertionError(f"no series with a value for {promql} in {timeout_s} s: {terms}")


def _value(url: str, promql: str) -> float:
    return sum(float(s["value"][1]) for s in query(url, promql))


def test_usage_and_cost_by_tenant_agent_scenario_and_model(stack: Stack, prom: str) -> None:
    """The tiny model is priced per token (its cost counted per answer); SmolLM2 per
    GPU-second of its replicas, shared out by tokens in the recording rule."""
    from tests.support.stack import TINY_PRICE

    client = openai.OpenAI(
        base_url=f"{stack.url}/v1",
        api_key=KEY_B,
        timeout=60,
        default_headers={"X-Scenario": "support"},
    )
    planner = runtime.connect(stack.url, api_key=KEY_B).agent("planner")
    direct = f'tenant="tenant-b",agent="-",scenario="support",model="{TINY_MODEL}"'
    agent = f'tenant="tenant-b",agent="planner",scenario="support",model="{stack.model}"'
    for _ in range(2):  # twice: a rate needs the counters seen, then moving
        client.chat.completions.create(
            model=TINY_MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
        planner.session().invoke("Say hi in one word.")
        for labels in (direct, agent):
            eventually(prom, f"ray_runtime_usage_requests_total{{{labels}}}")
            eventually(prom, f'ray_runtime_usage_tokens_total{{{labels},direction="output"}}')
    eventually(prom, f"ray_runtime_cost_usd_total{{{direct}}}")
    assert not query(prom, f"ray_runtime_cost_usd_total{{{agent}}}")  # priced per GPU-second
    eventually(prom, f'ray_runtime_llm_gpu_seconds_total{{model="{stack.model}"}}')
    eventually(prom, f'ray_runtime_llm_gpu_cost_usd_total{{model="{stack.model}"}}')

    # The counted cost is the tokens at the configured price (counters exported together).
    def priced() -> tuple[float, float]:
        tokens = {
            d: _value(prom, f'ray_runtime_usage_tokens_total{{{direct},direction="{d}"}}')
            for d in ("input", "output")
        }
        expected = (
            tokens["input"] * TINY_PRICE["input_per_million"]
            + tokens["output"] * TINY_PRICE["output_per_million"]
        ) / 1e6
        return _value(prom, f"ray_runtime_cost_usd_total{{{direct}}}"), expected

    cost, expected = priced()
    assert cost == pytest.approx(expected, rel=1e-6)

    # The recording rule: per-token cost as counted, GPU cost shared by tokens. A rate
    # needs one series seen at two values, and each of the `agents` app's two replicas
    # counts its own series (the two turns above may have gone one to each), so traffic
    # goes on until the rule has a rate.
    moving(
        prom,
        f"runtime:cost_usd:rate5m{{{direct}}}",
        lambda: client.chat.completions.create(
            model=TINY_MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        ),
    )
    moving(
        prom,
        f"runtime:cost_usd:rate5m{{{agent}}}",
        lambda: planner.session().invoke("Say hi in one word."),
        parts=(
            f"sum(rate(ray_runtime_usage_tokens_total{{{agent}}}[5m]))",
            f'sum(rate(ray_runtime_usage_tokens_total{{model="{stack.model}"}}[5m]))',
            f'sum(rate(ray_runtime_llm_gpu_cost_usd_total{{model="{stack.model}"}}[5m]))',
        ),
    )
    eventually(prom, f'runtime:gpu_cost_usd:rate5m{{model="{stack.model}"}}')
