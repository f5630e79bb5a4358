"""Who a request or an agent turn is for: the one way the tenant travels in a process.

The gateway binds a :class:`CallContext` when it has authenticated a request; an agent
replica binds one for each turn (the tenant arrives as the first argument of every
agent handle call, set by the gateway from the caller's key, or by the SDK in the
cluster). The LLM router charges and labels every LLM answer by it, and every log
record made inside it names its tenant (``runtime.telemetry.logs``).

    >>> ctx = CallContext(tenant="acme", agent="assistant", scenario="support")
    >>> bind(ctx)  # doctest: +SKIP
    >>> current().tenant  # doctest: +SKIP
    'acme'
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class CallContext:
    """The tenant an LLM call is charged to, and its usage and cost labels."""

    tenant: str = DEFAULT_TENANT
    #: The agent making the call; ``-`` for a client's own call.
    agent: str = "-"
    #: The cost label: a client's ``X-Scenario`` (``direct`` without one), an agent's
    #: configured ``scenario``.
    scenario: str = "direct"
    #: The API key of a client's own call (its per-key limits); None for an agent's.
    key_id: str | None = None


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "runtime_call_context", default=None
)
#: Called with each bound context (the logs keep the tenant per Serve request id).
_listeners: list[Callable[[CallContext], None]] = []


def bind(ctx: CallContext) -> None:
    """Make ``ctx`` the context of the code running in this (asyncio) context."""
    _current.set(ctx)
    for listener in _listeners:
        listener(ctx)


def current() -> CallContext:
    """The bound context, or the default tenant's."""
    return _current.get() or CallContext()


def bound() -> CallContext | None:
    """The bound context, or None outside any request or turn."""
    return _current.get()


def on_bind(listener: Callable[[CallContext], None]) -> None:
    if listener not in _listeners:
        _listeners.append(listener)
