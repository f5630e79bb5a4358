"""Relaying a Serve streaming response (``handle.options(stream=True)``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from typing import Any


async def relay(
    response: Any, mapped: Callable[[Exception], BaseException]
) -> AsyncGenerator[Any, None]:
    """The items of ``response``; a remote failure is raised as ``mapped(exc)``.

    A consumer that stops early (closes this generator, or is cancelled) cancels the
    replica's generator, so the work behind it stops (an LLM request, an agent run).
    Nested in another async generator, wrap it in ``contextlib.aclosing`` so that
    closing the outer one closes this one at once.
    """
    finished = False
    try:
        async for item in response:
            yield item
        finished = True
    except (GeneratorExit, asyncio.CancelledError):
        raise
    except Exception as exc:
        finished = True
        raise mapped(exc) from None
    finally:
        if not finished:
            response.cancel()
