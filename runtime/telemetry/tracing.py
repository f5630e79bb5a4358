"""Traces: OpenTelemetry spans of the runtime's own stages, inside Ray Serve's.

Ray Serve (2.60) traces requests itself when the serve config's top-level
``tracing_config`` enables it: a span per proxy request and per replica call, with
W3C trace context carried across every deployment handle call. The runtime adds its
stages under them and exports everything through OTLP::

    tracing_config:
      enabled: true
      exporter_import_path: runtime.telemetry.tracing:otlp_exporter
      sampling_ratio: 0.05

The endpoint comes from OpenTelemetry's own variables in the replicas' environment
(``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``). Every span passes the
redactor (``runtime.telemetry.redact``) on its way out: attribute values, event
attributes (exception messages and stack traces) and status descriptions.

Spans (attributes never hold prompts or completions, unless ``$RUNTIME_LOG_CONTENT``):

    gateway <method> <route>  the gateway's handling of one HTTP request (tenant, status)
    agent.turn           one agent turn (agent, tenant, session, outcome, steps, tokens)
    llm.call             an agent's LLM call (model, tokens), parent of the model's spans
    tool.call            an agent's tool call (tool, error)
    checkpoint.read/write  an agent's checkpoint I/O
    provider.attempt     one HTTP attempt at an external provider (provider, status),
                         whose ``traceparent`` header carries the trace to the provider

With tracing off (the local default) the API's no-op tracer makes all of this free.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from runtime.telemetry.redact import redact

__all__ = [
    "Span",
    "SpanKind",
    "Status",
    "StatusCode",
    "annotate",
    "current_context",
    "end",
    "inject",
    "otlp_exporter",
    "span",
    "start",
    "trace_ids",
    "use",
]

_TRACER = "runtime"


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER)


@contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
) -> Iterator[Span]:
    """A span around a block, current inside it; an exception marks it failed (type
    only in the status: messages go through the exporter's redaction as an event)."""
    with tracer().start_as_current_span(
        name,
        context=parent,
        kind=kind,
        attributes=_clean(attributes),
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            if current.is_recording():
                current.record_exception(exc)
                current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def start(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Any = None,
) -> Span:
    """A span that the caller ends (LangChain callbacks start and end in two calls)."""
    return tracer().start_span(name, context=parent, kind=kind, attributes=_clean(attributes))


def end(
    current: Span, error: BaseException | None = None, attributes: Mapping[str, Any] | None = None
) -> None:
    if current.is_recording():
        if attributes:
            current.set_attributes(_clean(attributes) or {})
        if error is not None:
            current.record_exception(error)
            current.set_status(Status(StatusCode.ERROR, type(error).__name__))
    current.end()


def annotate(attributes: Mapping[str, Any], error: str | None = None) -> None:
    """Attributes (and an error status, described by ``error``) on the current span."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_clean(attributes) or {})
        if error is not None:
            current.set_status(Status(StatusCode.ERROR, error))


def use(current: Span) -> Any:
    """Make a span current for a block without ending it at the block's end."""
    return trace.use_span(current, end_on_exit=False)


def current_context() -> Any:
    """The context to parent spans started later, in callbacks (``start(parent=…)``)."""
    from opentelemetry import context

    return context.get_current()


def trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, hex, when one is being recorded."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def inject(headers: Any) -> None:
    """W3C ``traceparent`` (and ``tracestate``) of the current span into ``headers``."""
    propagate.inject(headers)


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not attributes:
        return None
    return {k: v for k, v in attributes.items() if v is not None}


# -- export -------------------------------------------------------------------------


def _redacted_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) if isinstance(v, str) else v for v in value)
    return value


def _redacted_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: _redacted_value(v) for k, v in (attributes or {}).items()}


def redacted(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span with its attributes, events and status redacted."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redact(status.description))
    events = [Event(e.name, _redacted_attributes(e.attributes), e.timestamp) for e in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingExporter(SpanExporter):
    """Wraps an exporter: every span is redacted before it leaves the process."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redacted(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_exporter() -> list[BatchSpanProcessor]:
    """Serve's ``tracing_config.exporter_import_path``: OTLP over HTTP (protobuf), the
    endpoint and headers from ``OTEL_EXPORTER_OTLP_*``, spans redacted, in batches."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return [BatchSpanProcessor(RedactingExporter(OTLPSpanExporter()))]
