"""The one polling helper of the tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    predicate: Callable[[], object],
    timeout_s: float = 30,
    what: str = "",
    interval_s: float = 0.05,
    *,
    retry: type[Exception] | tuple[type[Exception], ...] = (),
    message: str | None = None,
    fail: bool = True,
) -> float:
    """Poll until ``predicate()`` holds; the seconds it took.

    After ``timeout_s`` an AssertionError: ``message``, by default "timed out after
    {timeout_s} s waiting for {what}" (``fail=False``: no error, the seconds waited; the
    caller's own assertions say what is missing). An exception of ``retry`` from
    ``predicate()`` counts as "not yet" (and is the cause of that AssertionError when
    the last try raised it); any other propagates at once.
    """
    started = time.monotonic()
    while True:
        last: Exception | None = None
        try:
            if predicate():
                return time.monotonic() - started
        except retry as exc:
            last = exc
        waited = time.monotonic() - started
        if waited > timeout_s:
            if not fail:
                return waited
            raise AssertionError(
                message or f"timed out after {timeout_s} s waiting for {what}"
            ) from last
        time.sleep(interval_s)
