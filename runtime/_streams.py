"""Relaying a Serve streaming response (``handle.options(stream=True)``), and
coalescing a stream of texts for a reader that falls behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
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


async def coalesced(texts: AsyncIterator[str]) -> AsyncGenerator[str, None]:
    """The texts of ``texts``, joined while the reader is behind.

    A reader that keeps up gets each text as it arrives (the first one is never held
    back, nor any other: nothing waits for a timer); one that falls behind (a busy
    event loop, a slow hop after it) gets everything that arrived since its last read
    in one piece. SSE events stay whole and in order, so a client still sees one event
    per token; the hops behind the reader carry fewer, larger messages.

    A failure of ``texts`` is raised after the texts before it. Closing this generator
    (or cancelling its reader) stops the reading of ``texts`` and waits until that is
    done, also when the reader is cancelled again meanwhile (anyio's task groups, and so
    Starlette's responses, cancel on every turn of the loop): ``texts`` may then be
    closed by its owner.
    """
    pending: list[str] = []
    arrived = asyncio.Event()
    ended: list[BaseException | None] = []  # [None]: the end; [exc]: a failure

    async def pump() -> None:
        try:
            async for text in texts:
                pending.append(text)
                arrived.set()
            ended.append(None)
        except BaseException as exc:  # a cancellation of `texts`' own, too: never a hang
            ended.append(exc)
        finally:
            arrived.set()

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            await arrived.wait()
            arrived.clear()
            if pending:
                joined = "".join(pending)
                pending.clear()
                yield joined
            if ended and not pending:
                if ended[0] is not None:
                    raise ended[0]
                return
    finally:
        task.cancel()
        while not task.done():  # it may be in `texts`' own clean-up (a shielded charge)
            with contextlib.suppress(asyncio.CancelledError):  # the one in flight goes on
                await asyncio.wait({task})
