"""Turns sent with an idempotency key: run once, answered again on a retry.

A client (the SDK does it for each call) may send a turn with a key of its choosing,
the same on each retry. The first run of the turn is recorded under the session and
the key (``store.claim_run``); a retry with the key then

- gets the recorded outcome (final result or error) when the run ended for good;
- follows the run while it runs, here or on a live replica elsewhere, and gets its
  outcome when it ends (never a second run, never ``SessionBusyError`` from itself);
- resumes the run when it died without an outcome (its replica was killed, it lost
  its lease, or it was cancelled: a cut connection cancels a run): the new run
  continues from the dead one's last checkpoint, without appending the message again
  (the message's id is the key's). A step that was running when it died runs again:
  steps, tool calls included, are at least once; each tool call keeps its id.

A key is remembered for the session's life (deleting or pruning the session forgets
it). Keys are per session: the same key on another session is another turn.
"""

from __future__ import annotations

import asyncio
import logging
import time

from runtime.agents.leases import Leases
from runtime.agents.outcomes import error_event
from runtime.agents.protocol import RunEvent
from runtime.agents.store import SessionStore
from runtime.agents.turn import Turn
from runtime.config.agents import AgentSpec, SessionsConfig
from runtime.errors import AgentUnavailableError

logger = logging.getLogger("ray.serve")

#: Outcomes a retry resumes rather than repeats: the run did not end by its own logic.
RESUMABLE = frozenset({"unavailable", "run_cancelled"})


class Runs:
    def __init__(
        self,
        store: SessionStore,
        config: SessionsConfig,
        turns: dict[str, Turn],
        leases: Leases,
    ) -> None:
        self.store = store
        self.config = config
        self._turns = turns
        self._leases = leases

    async def earlier(self, spec: AgentSpec, turn: Turn) -> Turn | None:
        """A turn that answers ``turn`` from its earlier run; None when ``turn`` runs
        (the first run of its key, or, with ``turn.resume``, the earlier run's sequel)."""
        assert turn.idem is not None
        record = await self.store.claim_run(turn.key, turn.idem, turn.run_id)
        if record is None:
            return None
        if record.outcome is not None:
            return self._answered(turn, record.run_id, RunEvent.model_validate_json(record.outcome))
        if await self._running(turn.key, record.run_id):
            return self._follow(turn, record.run_id, spec)
        if await self.store.reclaim_run(turn.key, turn.idem, record.run_id, turn.run_id):
            turn.resume = True
            return None
        again = await self.store.get_run(turn.key, turn.idem)  # another retry was first
        return self._follow(turn, again.run_id if again else record.run_id, spec)

    async def ended(self, turn: Turn, outcome: RunEvent) -> None:
        """Record the run's outcome, unless a retry should resume the run."""
        if turn.idem is None:
            return
        kind = (outcome.error or {}).get("type") if outcome.type == "error" else None
        if kind in RESUMABLE:
            return
        try:
            await self.store.end_run(turn.key, turn.idem, turn.run_id, outcome.model_dump_json())
        except Exception as exc:  # a retry then resumes: the thread has the answer
            logger.warning("recording a run's outcome failed: %s", type(exc).__name__)

    async def _running(self, key: str, run_id: str) -> bool:
        if run_id in self._turns:
            return True
        row = await self.store.get(key)
        if row is None or row.run_id != run_id or not row.running():
            return False
        return await self._leases.holder_alive(row)

    def _copy(self, turn: Turn, run_id: str) -> Turn:
        return Turn(
            run_id=run_id,
            session_id=turn.session_id,
            agent=turn.agent,
            tenant=turn.tenant,
            key=turn.key,
            thread_id=turn.thread_id,
            idem=turn.idem,
        )

    def _answered(self, turn: Turn, run_id: str, outcome: RunEvent) -> Turn:
        answered = self._copy(turn, run_id)
        answered.finished = True
        answered.events.put_nowait(outcome)
        answered.events.put_nowait(None)
        return answered

    def _follow(self, turn: Turn, run_id: str, spec: AgentSpec) -> Turn:
        follower = self._copy(turn, run_id)
        follower.task = asyncio.create_task(self._outcome(follower, spec))
        return follower

    async def _outcome(self, follower: Turn, spec: AgentSpec) -> None:
        """Wait for the followed run's outcome, then emit it."""
        assert follower.idem is not None
        deadline = time.monotonic() + spec.budgets.max_seconds + self.config.lease_ttl_s
        outcome: RunEvent | None = None
        while outcome is None:
            record = await self.store.get_run(follower.key, follower.idem)
            if record is not None and record.run_id == follower.run_id and record.outcome:
                outcome = RunEvent.model_validate_json(record.outcome)
            elif (
                record is None
                or record.run_id != follower.run_id
                or time.monotonic() > deadline
                or not await self._running(follower.key, follower.run_id)
            ):
                unavailable = AgentUnavailableError(
                    "the turn's earlier run ended without an outcome (its replica failed "
                    "or it was cut off); retry with the same key to resume it"
                )
                outcome = error_event(follower.run_id, unavailable)
            else:
                local = self._turns.get(follower.run_id)
                if local is not None and local.task is not None:
                    await asyncio.wait([local.task], timeout=self.config.poll_interval_s)
                else:
                    await asyncio.sleep(self.config.poll_interval_s)
        follower.events.put_nowait(outcome)
        follower.events.put_nowait(None)
