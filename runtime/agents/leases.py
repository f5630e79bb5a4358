"""Leases: at most one turn runs on a session at a time, on any replica.

A turn takes its session's lease in the store before it runs (by the agent's busy
policy: refuse, queue, or interrupt the running turn), a heartbeat renews the leases
of every turn running here and finds the stop requests (cancel, interrupt) that other
replicas wrote, and a turn releases its lease when it ends. Lease times are the
database's clock.

- **Take-over.** The lease names its holder (the replica's Ray actor). A turn that
  finds its session busy asks Ray whether that actor is alive; when it is dead, the
  turn takes the lease at once (compare-and-set on the dead run's id) instead of
  waiting ``lease_ttl_s`` for it to lapse. A holder that is alive but stalled still
  keeps its lease until it lapses.
- **Fencing.** Before each checkpoint write a turn checks in the store that it still
  holds its lease for ``fence_margin_s`` more (``fence``; one indexed read). A turn
  whose lease lapsed (its replica stalled, or lost the database) and was taken by
  another stops with :class:`~runtime.errors.LeaseLostError` before writing anything
  more; the heartbeat also stops every turn here once renewals have failed for
  ``lease_ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from runtime.agents.store import SessionRow, SessionStore
from runtime.agents.turn import Turn
from runtime.config.agents import AgentSpec, SessionsConfig
from runtime.errors import (
    AgentUnavailableError,
    LeaseLostError,
    RunCancelledError,
    SessionBusyError,
)

logger = logging.getLogger("ray.serve")

#: Ray Serve's actors' namespace.
SERVE_NAMESPACE = "serve"
#: Whether the replica a lease names is alive (None: this process is no Ray actor).
Liveness = Callable[[str], Awaitable[bool]]


def replica_name() -> str | None:
    """This process's Ray actor, as ``namespace/name`` (None outside a named actor)."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        ctx = ray.get_runtime_context()
        name = ctx.get_actor_name()
        if not name:
            return None
        # Serve makes its replicas in its own namespace, not the job's (ctx.namespace).
        return f"{SERVE_NAMESPACE if name.startswith('SERVE_') else ctx.namespace}/{name}"
    except Exception:  # not in an actor, or no Ray: no take-over, leases lapse
        return None


async def ray_actor_alive(holder: str) -> bool:
    """Whether the named actor is alive: Ray drops a dead actor's name (a replica Serve
    restarts is a new actor with a new name)."""
    import ray

    namespace, _, name = holder.partition("/")

    def lookup() -> bool:
        try:
            ray.get_actor(name, namespace=namespace)
        except ValueError:  # no live actor has that name
            return False
        return True

    try:
        return await asyncio.to_thread(lookup)
    except Exception:  # Ray cannot tell: assume alive, the lease lapses on its own
        return True


class Leases:
    def __init__(
        self,
        store: SessionStore,
        config: SessionsConfig,
        turns: dict[str, Turn],
        cancel: Callable[[str, str], Awaitable[bool]],
        holder: str | None = None,
        alive: Liveness | None = None,
    ) -> None:
        """``turns``: the turns running here, by run id (the service's); ``cancel``:
        cancels a session's turn wherever it runs; ``holder``: this replica's name in
        the leases it takes; ``alive``: whether another holder is alive."""
        self.store = store
        self.config = config
        self.holder = holder
        self._alive = alive
        self._turns = turns
        self._cancel = cancel
        self._heartbeat: asyncio.Task[None] | None = None
        self._renewed = time.monotonic()  # the last renewal that reached the store
        self.taken_over = 0  # leases taken from dead replicas (tests, logs)

    @property
    def fence_margin_s(self) -> float:
        return min(1.0, self.config.lease_ttl_s / 4)

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
        ttl = self.config.lease_ttl_s
        if await self.store.acquire(turn.key, turn.run_id, ttl, self.holder):
            return True
        return await self._take_over(turn)

    async def _take_over(self, turn: Turn) -> bool:
        """Take the lease of a turn whose replica is dead."""
        if self._alive is None:
            return False
        row = await self.store.get(turn.key)
        if row is None or not row.running() or row.run_id is None or not row.holder:
            return False
        if row.holder == self.holder or await self._alive(row.holder):
            return False
        ttl = self.config.lease_ttl_s
        if not await self.store.take_over(turn.key, turn.run_id, ttl, self.holder, row.run_id):
            return False  # another turn was quicker
        self.taken_over += 1
        logger.warning("took over a session whose replica is dead (its lease had not lapsed)")
        return True

    async def holder_alive(self, row: SessionRow) -> bool:
        """Whether the replica holding the row's lease may still be running its turn
        (True when it cannot be told: the lease lapses on its own)."""
        if not row.holder or self._alive is None:
            return True
        if row.holder == self.holder:  # this replica: its running turns are known here
            return row.run_id in self._turns
        return await self._alive(row.holder)

    async def alive(self, holder: str) -> bool:
        """Whether the replica ``holder`` is alive (True when it cannot be told)."""
        return True if self._alive is None else await self._alive(holder)

    async def _wait(self, key: str, left: float) -> None:
        local = [t.task for t in self._turns.values() if t.key == key and t.task is not None]
        if local:  # the holder runs here: wake up as soon as it ends
            await asyncio.wait(local, timeout=min(left, self.config.lease_ttl_s))
        else:
            await asyncio.sleep(min(left, self.config.poll_interval_s))

    async def fence(self, turn: Turn) -> None:
        """Raise LeaseLostError unless ``turn`` holds its lease for a while yet
        (RunCancelledError when its session was deleted meanwhile)."""
        try:
            held = not turn.lease_lost and await self.store.holds(
                turn.key, turn.run_id, self.fence_margin_s
            )
        except Exception as exc:  # the store is unreachable: the write would fail too
            raise AgentUnavailableError(
                f"the session store could not be reached ({type(exc).__name__}); the "
                "session keeps its last checkpoint"
            ) from None
        if not held:
            row = await self.store.get(turn.key)
            if row is None or row.thread_id != turn.thread_id:
                raise RunCancelledError("the session was deleted; completed steps are dropped")
            turn.lease_lost = True
            raise LeaseLostError(
                "the turn lost its session's lease (its replica stalled or lost the "
                "database) and stopped before writing more; the session keeps its last "
                "checkpoint"
            )

    def keep_alive(self) -> None:
        """Renew the leases of the turns running here until none is left."""
        if self._heartbeat is None or self._heartbeat.done():
            self._renewed = time.monotonic()
            self._heartbeat = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while self._turns:
            await asyncio.sleep(self.config.poll_interval_s)
            sent = time.monotonic()
            runs = {run_id: t.key for run_id, t in self._turns.items()}
            try:
                stop = await self.store.renew(runs, self.config.lease_ttl_s)
            except Exception as exc:  # keep renewing; the lease outlives a few misses
                logger.warning("renewing session leases failed: %s", type(exc).__name__)
                if time.monotonic() - self._renewed > self.config.lease_ttl_s:
                    self._lost_all()
                continue
            self._renewed = sent
            for run_id, why in stop.items():
                turn = self._turns.get(run_id)
                if turn is None:
                    continue
                if why == "taken":
                    turn.lease_lost = True
                    turn.cancel("the turn lost its session's lease to another turn")
                elif why == "deleted":
                    turn.cancel("the session was deleted", final=True)
                else:
                    turn.cancel(
                        "the run was cancelled (by the client or a newer message)", final=True
                    )

    def _lost_all(self) -> None:
        """Renewals failed for a whole lease: every lease here may be another's now."""
        for turn in list(self._turns.values()):
            turn.lease_lost = True
            turn.cancel("the turn lost its session's lease: renewals failed")

    async def release(self, turn: Turn) -> None:
        try:
            await asyncio.shield(self.store.release(turn.key, turn.run_id))
        except Exception as exc:  # the lease lapses on its own after lease_ttl_s
            logger.warning("releasing a session lease failed: %s", type(exc).__name__)

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
