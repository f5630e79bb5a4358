"""This process's spans in memory, through the runtime's redacting exporter (the
in-process telemetry tests of tests/unit and tests/cluster share it: OpenTelemetry
takes one tracer provider per process, the first one stays)."""

from __future__ import annotations

import functools

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.telemetry import tracing


@functools.cache
def exported() -> InMemorySpanExporter:
    """This process's spans, through the runtime's redacting exporter, in memory (set up
    on the first call)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.RedactingExporter(memory)))
    trace.set_tracer_provider(provider)  # once per process: the first one stays
    assert trace.get_tracer_provider() is provider, "another test set a tracer provider"
    return memory


def fresh() -> InMemorySpanExporter:
    """The in-memory exporter, without the spans of earlier tests."""
    memory = exported()
    memory.clear()
    return memory
