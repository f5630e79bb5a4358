"""Structured, redacted logs.

Ray Serve writes each replica's log records to its own file under the Ray session's
``logs/serve/``; with the serve config's ``logging_config: {encoding: JSON}`` (set in
the shipped configs) each line is a JSON object with Serve's fields (``request_id``,
``application``, ``deployment``, ``replica``, ``route``) and every extra attribute of
the record. ``install()`` (once per replica process, by each deployment) adds:

* ``tenant`` (of the bound :mod:`runtime.context`), ``trace_id`` and ``span_id`` to
  every record made inside a request (``trace_id`` while tracing is on);
* redaction of every record of the process, whatever its logger (the runtime's,
  Serve's, vLLM's, LangChain's, httpx's): its message, arguments, exception text and
  stack are replaced by their redacted form when the record is made, so no handler
  or formatter ever sees the original.

    >>> install(["acct-[0-9]{6}"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from ray.serve.context import _get_serve_request_context

from runtime import context
from runtime.telemetry import redact as _redact
from runtime.telemetry.tracing import trace_ids

#: Serve request id -> tenant, for records made outside the handler's context (Serve's
#: access line, written after the handler returns). Bounded: the oldest go first.
_by_request: OrderedDict[str, str] = OrderedDict()
_BY_REQUEST_MAX = 4096


def _request_id() -> str:
    """The Serve request being served here ("" outside one)."""
    return str(_get_serve_request_context().request_id or "")


def _remember(ctx: context.CallContext) -> None:
    """Keep the tenant of the Serve request a context is bound in (for its access line)."""
    request_id = _request_id()
    if request_id:
        _by_request[request_id] = ctx.tenant
        _by_request.move_to_end(request_id)
        while len(_by_request) > _BY_REQUEST_MAX:
            _by_request.popitem(last=False)


def _factory(inner: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        try:
            _scrub(record)
        except Exception:  # a record that cannot be formatted: keep no text of it
            record.msg, record.args = "[a log record that could not be redacted]", ()
            record.exc_info, record.exc_text = None, None
        ctx = context.bound()
        tenant = ctx.tenant if ctx else (_by_request.get(_request_id()) if _by_request else None)
        if tenant is not None:
            record.tenant = tenant
        ids = trace_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return record

    make.runtime_redaction = True  # type: ignore[attr-defined]
    return make


def _scrub(record: logging.LogRecord) -> None:
    message = record.getMessage()
    clean = _redact.redact(message)
    if clean != message or record.args:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        # Formatters (logging's, Ray's JSON one) print exc_text when it is set and
        # format the live exception only when it is not.
        record.exc_text = _redact.redact(text)
    elif record.exc_text:
        record.exc_text = _redact.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = _redact.redact(record.stack_info)


def install(patterns: Iterable[str] = ()) -> None:
    """Redaction and context fields for every log record of this process (idempotent;
    patterns accumulate). Wraps whatever record factory is in place (Ray's, vLLM's)."""
    _redact.configure(patterns)
    context.on_bind(_remember)
    current = logging.getLogRecordFactory()
    if getattr(current, "runtime_redaction", False):
        return
    logging.setLogRecordFactory(_factory(current))
