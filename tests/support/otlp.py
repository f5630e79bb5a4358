"""An OTLP/HTTP trace receiver on loopback that keeps spans in memory (for tests).

It is the collector end of the runtime's real exporter (``runtime.telemetry.tracing:
otlp_exporter``: OTLP over HTTP, protobuf): replicas send their spans here as they
would to an OpenTelemetry Collector, and tests query them by trace.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.polling import wait_for


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    events: list[dict[str, Any]]
    status: dict[str, Any]
    resource: dict[str, Any]
    start: int  # ns since the epoch
    #: The span as received (protobuf as JSON), for searching its whole text.
    raw: str = field(repr=False, default="")


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in items}


class SpanReceiver:
    """``POST /v1/traces``; spans land in ``spans`` (thread-safe reads via ``find``)."""

    def __init__(self, port: int) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._add(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{port}/v1/traces"
        threading.Thread(target=self.server.serve_forever, name="otlp", daemon=True).start()

    def _add(self, request: ExportTraceServiceRequest) -> None:
        spans = []
        for rs in request.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        Span(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=s.kind,
                            attributes=_attributes(s.attributes),
                            events=[
                                {"name": e.name, "attributes": _attributes(e.attributes)}
                                for e in s.events
                            ],
                            status={"code": s.status.code, "message": s.status.message},
                            resource=resource,
                            start=s.start_time_unix_nano,
                            raw=str(MessageToDict(s)),
                        )
                    )
        with self._lock:
            self.spans += spans

    def all(self) -> list[Span]:
        with self._lock:
            return list(self.spans)

    def trace(self, trace_id: str) -> list[Span]:
        return [s for s in self.all() if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, names: set[str], timeout_s: float = 60) -> list[Span]:
        """The trace's spans once every name in ``names`` has arrived (or as they are after
        ``timeout_s``)."""
        return self.wait_until(trace_id, lambda spans: names <= {s.name for s in spans}, timeout_s)

    def wait_until(
        self, trace_id: str, done: Callable[[list[Span]], bool], timeout_s: float = 60
    ) -> list[Span]:
        """The trace's spans once ``done(spans)`` holds, or as they are after ``timeout_s``
        (the caller's assertions say what is missing)."""
        spans: list[Span] = []

        def arrived() -> bool:
            spans[:] = self.trace(trace_id)
            return done(spans)

        wait_for(arrived, timeout_s, interval_s=0.5, fail=False)
        return spans
