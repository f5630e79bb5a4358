"""``runtime._streams.coalesced``: the gateway's SSE texts, joined only while the reader
is behind (in-process; the gateway's streams are tested on the cluster)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runtime._streams import coalesced

TEXTS = [f"data: {i}\n\n" for i in range(12)]


async def _produce(gap_s: float, fail_after: int | None = None) -> AsyncIterator[str]:
    for i, text in enumerate(TEXTS):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("the model's replica went away")
        yield text
        await asyncio.sleep(gap_s)


async def _read(texts: AsyncIterator[str], pause_s: float) -> list[str]:
    out = []
    async for piece in coalesced(texts):
        out.append(piece)
        await asyncio.sleep(pause_s)  # the reader's own work (a busy loop, a slow hop)
    return out


def test_a_reader_that_keeps_up_gets_every_text_alone() -> None:
    assert asyncio.run(_read(_produce(0.01), 0)) == TEXTS


def test_a_reader_behind_gets_the_texts_joined_in_order_the_first_at_once() -> None:
    out = asyncio.run(_read(_produce(0.002), 0.02))
    assert out[0] == TEXTS[0]  # never held back
    assert "".join(out) == "".join(TEXTS)  # nothing lost, split or reordered
    assert len(out) < len(TEXTS) / 2


def test_a_failure_comes_after_the_texts_before_it() -> None:
    seen: list[str] = []

    async def read() -> None:
        async for piece in coalesced(_produce(0.001, fail_after=5)):
            seen.append(piece)

    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(read())
    assert "".join(seen) == "".join(TEXTS[:5])


async def _source(state: list[str], cleanup_s: float = 0.0) -> AsyncIterator[str]:
    """The texts, slowly; its own clean-up takes ``cleanup_s`` (shielded, as the router's
    charge is), then says so in ``state``."""
    try:
        for text in TEXTS:
            yield text
            await asyncio.sleep(0.01)
    finally:
        if cleanup_s:
            await asyncio.shield(asyncio.sleep(cleanup_s))
        state.append("source stopped")


def test_closing_it_stops_the_reading_before_the_owner_closes_the_source() -> None:
    state: list[str] = []

    async def main() -> None:
        texts = _source(state)
        stream = coalesced(texts)
        assert await anext(stream) == TEXTS[0]
        await stream.aclose()
        state.append("reader closed")
        await texts.aclose()  # no "already running" error: the pump no longer reads it

    asyncio.run(main())
    assert state == ["source stopped", "reader closed"]


def test_a_reader_cancelled_again_and_again_still_waits_for_the_pump() -> None:
    """Starlette runs a response in an anyio task group, and anyio cancels its tasks again
    on every turn of the loop until they end. The pump, meanwhile, may be inside the
    source's own clean-up (the router charges the tokens there, shielded): the reader must
    not let go before it is done, or the owner's ``aclose`` of the source finds it still
    running."""
    import anyio

    state: list[str] = []

    async def main() -> None:
        texts = _source(state, cleanup_s=0.05)  # the charge, after the cancel
        stream = coalesced(texts)
        async with anyio.create_task_group() as group:

            async def read() -> None:
                async for _ in stream:
                    state.append("read")

            group.start_soon(read)
            await asyncio.sleep(0.015)
            group.cancel_scope.cancel()
        await stream.aclose()
        await texts.aclose()  # the owner's clean-up: no "already running"
        state.append("closed")

    asyncio.run(main())
    assert state[-2:] == ["source stopped", "closed"] and "read" in state
