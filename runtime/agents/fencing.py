"""The fence a turn's checkpoint writes pass (``leases.Leases.fence``): set in the
turn's task context, checked by the checkpointer before each write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

FENCE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "runtime_checkpoint_fence", default=None
)


async def check() -> None:
    """Raise (LeaseLostError) when the current turn may no longer write."""
    fence = FENCE.get()
    if fence is not None:
        await fence()
