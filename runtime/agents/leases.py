"""Leases: at most one turn runs on a session at a time, on any replica.

A turn takes its session's lease in the store before it runs (by the agent's busy
policy: refuse, queue, or interrupt the running turn), a heartbeat renews the leases
of every turn running here and finds the stop requests (cancel, interrupt) that other
replicas wrote, and a turn releases its lease when it ends. A replica that dies stops
renewing: its sessions are free again after ``lease_ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from runtime.agents.store import SessionStore
from runtime.agents.turn import Turn
from runtime.config.agents import AgentSpec, SessionsConfig
from runtime.errors import SessionBusyError

logger = logging.getLogger("ray.serve")


class Leases:
    def __init__(
        self,
        store: SessionStore,
        config: SessionsConfig,
        turns: dict[str, Turn],
        cancel: Callable[[str, str], Awaitable[bool]],
    ) -> None:
        """``turns``: the turns running here, by run id (the service's); ``cancel``:
        cancels a session's turn wherever it runs."""
        self.store = store
        self.config = config
        self._turns = turns
        self._cancel = cancel
        self._heartbeat: asyncio.Task[None] | None = None

    async def acquire(self, spec: AgentSpec, turn: Turn) -> None:
        """Take the session's lease for ``turn``; raise SessionBusyError by the policy."""
        if await self._try(turn):
            return
        if spec.busy == "reject":
            raise SessionBusyError(
                "the session's previous turn is still running; retry when it ends, or cancel it"
            )
        if spec.busy == "interrupt":
            await self._cancel(turn.key, "interrupted by a newer message")
        deadline = time.monotonic() + spec.budgets.max_seconds
        while not await self._try(turn):
            left = deadline - time.monotonic()
            if left <= 0:
                raise SessionBusyError(
                    f"the session stayed busy for {spec.budgets.max_seconds:g} s, "
                    "this agent's time budget; the message was not run"
                )
            await self._wait(turn.key, left)

    async def _try(self, turn: Turn) -> bool:
        return await self.store.acquire(turn.key, turn.run_id, self.config.lease_ttl_s)

    async def _wait(self, key: str, left: float) -> None:
        local = [t.task for t in self._turns.values() if t.key == key and t.task is not None]
        if local:  # the holder runs here: wake up as soon as it ends
            await asyncio.wait(local, timeout=min(left, self.config.lease_ttl_s))
        else:
            await asyncio.sleep(min(left, self.config.poll_interval_s))

    def keep_alive(self) -> None:
        """Renew the leases of the turns running here until none is left."""
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while self._turns:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                stop = await self.store.renew(list(self._turns), self.config.lease_ttl_s)
            except Exception as exc:  # keep renewing; the lease outlives a few misses
                logger.warning("renewing session leases failed: %s", type(exc).__name__)
                continue
            for run_id in stop:
                turn = self._turns.get(run_id)
                if turn is not None:
                    turn.cancel(
                        "the run was cancelled (by the client, by a newer message, or by "
                        "the session's deletion)"
                    )

    async def release(self, turn: Turn) -> None:
        try:
            await asyncio.shield(self.store.release(turn.key, turn.run_id))
        except Exception as exc:  # the lease lapses on its own after lease_ttl_s
            logger.warning("releasing a session lease failed: %s", type(exc).__name__)

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
