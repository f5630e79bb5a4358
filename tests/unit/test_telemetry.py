"""Telemetry in-process: the redactor, redacted log records of any logger (with tenant
and trace ids), redacted span export, the trace tree of an agent turn (in-memory span
exporter). The W3C trace context a provider receives: tests/cluster/test_telemetry.py."""

from __future__ import annotations

import asyncio
import io
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime import context
from runtime.agents.service import AgentService
from runtime.config.agents import AgentAppConfig
from runtime.config.errors import ConfigError
from runtime.config.serve_file import check_serve_config
from runtime.context import CallContext
from runtime.errors import InvalidInputError, LLMError
from runtime.telemetry import logs, tracing
from runtime.telemetry.redact import MASK, Redactor, content, secret_values
from tests.support.spans import fresh as fresh_spans
from tests.support.stack import scripted_agent

KEY = "sk-proj-" + secrets.token_hex(16)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """This process's spans in memory (tests/support/spans.py), none of earlier tests'."""
    return fresh_spans()


# -- the redactor ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {KEY}",
        "authorization=basic dXNlcjpwYXNzd29yZDEyMw==",
        f'{{"api_key": "{KEY}"}}',
        "x-api-key: abcdefgh12345678",
        f"Incorrect API key provided: {KEY}. You can find your key at ...",
        "password=hunter2hunter2",
        "refresh_token: 0123456789abcdef",
        "postgresql://agent:s3cr3t-pw@db:5432/sessions",
        "AIzaSyA-1234567890abcdefghijklmnopqrstuv",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a" * 36,
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0ZW5hbnQtYSJ9.c2lnbmF0dXJlc2lnbmF0dXJl",
        "1 validation error\n  input_value='tell me a secret', input_type=str",
        # The runtime's own keys, Redis' user-less URLs, tokens in a query string.
        "rt-" + "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eA",
        "redis://:s3cr3t-pw@redis:6379/0",
        "GET /v1/files?token=0123456789abcdef&x=1",
        "https://host/path?sig=0123456789abcdef",
    ],
)
def test_secrets_by_shape_are_removed(text: str) -> None:
    clean = Redactor().redact(text)
    assert MASK in clean
    for secret in (
        KEY,
        "dXNlcjpw",
        "abcdefgh12345678",
        "hunter2",
        "0123456789abcdef",
        "s3cr3t-pw",
        "AIzaSy",
        "AKIAIOSF",
        "ghp_",
        "eyJhbGci",
        "tell me",
        "Zm9vYmFy",
    ):
        assert secret not in clean, clean


def test_long_text_is_cut_before_redaction() -> None:
    """The redactor reads at most MAX_CHARS of a text (a hostile model name or body
    must not cost more than a log line), and drops the word the cut splits: its start
    may be a secret's. (Its time on crafted input: benchmarks/hostile_inputs.py.)"""
    from runtime.telemetry.redact import MAX_CHARS

    text = "word " * (MAX_CHARS // 5 - 1) + "sk-abc" + "d" * 1000
    clean = Redactor().redact(text)
    assert len(clean) < MAX_CHARS + 64
    assert clean.endswith("more chars cut]")
    assert "sk-abc" not in clean
    assert Redactor().redact("key-" * 50_000).startswith("[… 200000 more chars cut]")


def test_counts_and_ordinary_text_are_kept() -> None:
    text = '{"max_tokens": 1024, "input_tokens": 5, "prompt_tokens": 12} model=smollm2'
    assert Redactor().redact(text) == text


def test_secrets_by_value_and_configured_patterns() -> None:
    env = {
        "RUNTIME_API_KEY": "plain-looking-value-1",
        "MY_DSN": "host=db password=x1",
        "HOME": "/home/user",
        "SHORT_KEY": "abc",
    }
    values = secret_values(env)
    assert values == {"plain-looking-value-1", "host=db password=x1"}  # names say secret
    redactor = Redactor([r"acct-[0-9]{8}"], values)
    clean = redactor.redact("key plain-looking-value-1 for acct-12345678 in /home/user")
    assert clean == f"key {MASK} for {MASK} in /home/user"


def test_prompts_are_sizes_unless_the_environment_allows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RUNTIME_LOG_CONTENT", raising=False)
    assert content("what is my balance?") == "[content: 19 chars]"
    monkeypatch.setenv("RUNTIME_LOG_CONTENT", "1")
    assert content(f"what is my balance? key {KEY}") == f"what is my balance? key {MASK}"


def test_error_bodies_are_redacted_at_the_source() -> None:
    upstream = {"error": {"message": f"Incorrect API key provided: {KEY}", "code": 401}}
    assert KEY not in LLMError.from_body(upstream).to_body()["error"]["message"]
    assert KEY not in InvalidInputError(f"unknown field(s): {KEY}").to_body()["error"]["message"]


def test_bad_patterns_are_config_errors() -> None:
    def gateway(patterns: list[str]) -> dict[str, Any]:
        telemetry = {"redact_patterns": patterns}
        return {
            "applications": [
                {
                    "name": "g",
                    "import_path": "runtime.apps:build_gateway_app",
                    "args": {"telemetry": telemetry},
                }
            ]
        }

    check_serve_config(gateway([r"acct-[0-9]{8}"]))
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        check_serve_config(gateway(["acct-[0-9"]))
    with pytest.raises(ConfigError, match="matches the empty string"):
        check_serve_config(gateway(["x*"]))


def test_a_model_priced_twice_is_a_config_error() -> None:
    config = {
        "applications": [
            {
                "name": "g",
                "import_path": "runtime.apps:build_gateway_app",
                "args": {
                    "models": [
                        {
                            "name": "m",
                            "app": "llm",
                            "price": {"input_per_million": 1, "output_per_million": 2},
                        }
                    ]
                },
            },
            {
                "name": "llm",
                "route_prefix": None,
                "import_path": "runtime.apps:build_llm_app",
                "args": {
                    "model": {"source": "tiny-random", "served_name": "m"},
                    "price": {"per_gpu_second": 0.001},
                },
            },
        ]
    }
    with pytest.raises(ConfigError, match="counted twice"):
        check_serve_config(config)


# -- log records ----------------------------------------------------------------------


def test_every_log_record_is_redacted_and_names_tenant_and_trace(spans: Any) -> None:
    logs.install([r"acct-[0-9]{8}"])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s tenant=%(tenant)s trace=%(trace_id)s"))
    third_party = logging.getLogger("some.library")
    third_party.addHandler(handler)
    third_party.propagate = False
    try:
        with tracing.span("request") as span:
            context.bind(CallContext(tenant="tenant-a"))
            third_party.warning("calling with %s for %s", f"Bearer {KEY}", "acct-12345678")
            try:
                raise RuntimeError(f"upstream said: Incorrect API key provided: {KEY}")
            except RuntimeError:
                third_party.exception("the call failed")
        trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        third_party.removeHandler(handler)
    text = out.getvalue()
    assert KEY not in text and "acct-12345678" not in text, text
    assert text.count(MASK) >= 3
    assert f"tenant=tenant-a trace={trace_id}" in text
    assert "RuntimeError: upstream said" in text  # the traceback is kept, redacted


# -- spans ----------------------------------------------------------------------------


def test_exported_spans_are_redacted(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ValueError), tracing.span("call", {"http.header": f"Bearer {KEY}"}):
        raise ValueError(f"password={KEY}")
    (span,) = spans.get_finished_spans()
    text = str(span.attributes) + str([e.attributes for e in span.events]) + str(span.status)
    assert KEY not in text and MASK in str(span.attributes)
    assert span.status.description == "ValueError"


def _tree(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    children: dict[str, list[ReadableSpan]] = {}
    for s in finished:
        parent = format(s.parent.span_id, "016x") if s.parent else "-"
        children.setdefault(parent, []).append(s)
    return children


def _turn(tmp_path: Path, message: str, **agent: Any) -> tuple[str, str]:
    """One turn of the scripted agent `s` for tenant-a, in-process, inside a `client`
    span: (session id, answer)."""
    config = AgentAppConfig.model_validate(
        {
            "agents": [scripted_agent("s", **agent)],
            "sessions": {"store": {"kind": "sqlite", "path": str(tmp_path / "s.sqlite")}},
        }
    )

    async def main() -> tuple[str, str]:
        service = await AgentService.open(config)
        try:
            info = await service.create_session("tenant-a", "s")
            with tracing.span("client"):
                result = await service.invoke("tenant-a", "s", info.id, message)
            return info.id, result.answer
        finally:
            await service.close()

    return asyncio.run(main())


def test_an_agent_turn_traces_its_stages(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    """The scripted agent's "add": model -> calculator -> model, checkpoints between."""
    session, answer = _turn(tmp_path, "please add", scenario="support")
    assert answer == "2+3=5"
    finished = spans.get_finished_spans()
    (client,) = [s for s in finished if s.name == "client"]
    (turn,) = [s for s in finished if s.name == "agent.turn"]
    assert turn.parent is not None and turn.parent.span_id == client.context.span_id
    assert {s.context.trace_id for s in finished} == {client.context.trace_id}
    attributes = dict(turn.attributes or {})
    assert attributes["runtime.agent"] == "s" and attributes["runtime.tenant"] == "tenant-a"
    assert attributes["runtime.session"] == session and attributes["runtime.steps"] == 3
    assert attributes["runtime.outcome"] == "ok" and "gen_ai.prompt" not in attributes
    under_turn = sorted(
        _tree(finished)[format(turn.context.span_id, "016x")], key=lambda s: s.start_time or 0
    )
    stages = [s.name for s in under_turn if not s.name.startswith("checkpoint.")]
    assert stages == ["llm.call", "tool.call", "llm.call"]
    tool = next(s for s in under_turn if s.name == "tool.call")
    assert (tool.attributes or {})["runtime.tool"] == "calculator"
    llm = next(s for s in under_turn if s.name == "llm.call")
    assert (llm.attributes or {})["runtime.scenario"] == "support"
    names = [s.name for s in under_turn]
    assert names.count("checkpoint.write") >= 3 and "checkpoint.read" in names


def test_an_environment_may_record_prompts_still_redacted(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_LOG_CONTENT", "1")
    _turn(tmp_path, f"hello, my key is {KEY}")
    (turn,) = [s for s in spans.get_finished_spans() if s.name == "agent.turn"]
    attributes = dict(turn.attributes or {})
    assert attributes["gen_ai.prompt"] == f"hello, my key is {MASK}"
    assert attributes["gen_ai.completion"] == f"echo: hello, my key is {MASK}"
