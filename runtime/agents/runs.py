"""Turns sent with an idempotency key: run once, answered again on a retry.

A client (the SDK does it for each call) may send a turn with a key of its choosing,
the same on each retry. The first run of the turn is recorded under the session's
thread and the key (``store.claim_run``, with the replica that claimed it and the
message's digest); a retry with the key then

- gets the recorded outcome (final result or error) when the run ended for good;
- follows the run while it runs or waits for the session, here or on a live replica
  elsewhere, and gets its outcome when it ends (never a second run);
- resumes the run when it died without an outcome (its replica was killed or
  stopped, it lost its lease, the connection to its client was cut, a rate limit
  stopped it): the new run continues from the dead one's last checkpoint, without
  appending the message again (the message's id is the key's). A step that was
  running when it died runs again: steps, tool calls included, are at least once;
  each tool call keeps its id.

Whether a run goes ahead is decided again under the session's lease: a run that took
the lease after another retry took its record over stops there and follows that one.
A run cancelled on purpose (the client's cancel, a newer message's interrupt, the
session's deletion) is an outcome: its retry gets the cancellation. The same key with
another message is refused (400). A key is remembered for 24 hours
(``store.RUN_KEY_TTL_S``) and per session: the same key on another session, or on a
session deleted and created again, is another turn. Without Ray (no replica names) a
claim waiting for its session on another instance is not seen.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from runtime.agents.leases import Leases
from runtime.agents.outcomes import error_event
from runtime.agents.protocol import RunEvent
from runtime.agents.store import RunRecord, SessionStore
from runtime.agents.turn import Turn
from runtime.config.agents import AgentSpec, SessionsConfig
from runtime.errors import AgentUnavailableError, InvalidInputError

logger = logging.getLogger("ray.serve")

#: Outcomes a retry resumes rather than repeats: the run did not end by its own logic.
RESUMABLE = frozenset({"unavailable", "run_cancelled", "rate_limit_error"})


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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
        #: Runs claimed here that wait for their session's lease.
        self.pending: set[str] = set()

    async def earlier(self, spec: AgentSpec, turn: Turn, text: str) -> Turn | None:
        """A turn that answers ``turn`` from its earlier run; None when ``turn`` runs
        (the first run of its key, or, with ``turn.resume``, the earlier run's sequel)."""
        assert turn.idem is not None
        sent = digest(text)
        record = await self.store.claim_run(
            turn.thread_id, turn.idem, turn.run_id, self._leases.holder, sent
        )
        if record is None:
            return None
        if record.digest != sent:
            raise InvalidInputError(
                "this idempotency key was sent before with another message; use a new key "
                "for a new message",
                param="Idempotency-Key",
            )
        return await self._from(spec, turn, record)

    async def _from(self, spec: AgentSpec, turn: Turn, record: RunRecord) -> Turn | None:
        assert turn.idem is not None
        if record.outcome is not None:
            return self._answered(turn, record.run_id, RunEvent.model_validate_json(record.outcome))
        if await self._running(turn, record):
            return self._follow(turn, record.run_id, spec)
        holder = self._leases.holder
        if await self.store.reclaim_run(
            turn.thread_id, turn.idem, record.run_id, turn.run_id, holder
        ):
            turn.resume = True
            return None
        again = await self.store.get_run(turn.thread_id, turn.idem)  # another retry was first
        return self._follow(turn, again.run_id if again else record.run_id, spec)

    async def superseded(self, spec: AgentSpec, turn: Turn) -> Turn | None:
        """Under the lease: None when ``turn`` is still its key's run; else (another
        retry took the record over meanwhile) a turn following that run."""
        assert turn.idem is not None
        record = await self.store.get_run(turn.thread_id, turn.idem)
        if record is not None and record.run_id == turn.run_id:
            return None
        if record is None:
            return self._answered(turn, turn.run_id, self._unavailable(turn.run_id))
        return self._follow(turn, record.run_id, spec)

    async def not_run(self, turn: Turn) -> None:
        """``turn`` did not get its session: a retry runs it afresh (or, if it was an
        earlier run's sequel, resumes that)."""
        if turn.idem is not None:
            forget = not turn.resume
            await self.store.end_run(turn.thread_id, turn.idem, turn.run_id, None, forget)

    async def ended(self, turn: Turn, outcome: RunEvent) -> None:
        """Record the run's outcome, unless a retry should resume the run."""
        if turn.idem is None:
            return
        kind = (outcome.error or {}).get("type") if outcome.type == "error" else None
        final = kind not in RESUMABLE or (kind == "run_cancelled" and turn.final)
        try:
            recorded = outcome.model_dump_json() if final else None
            await self.store.end_run(turn.thread_id, turn.idem, turn.run_id, recorded)
        except Exception as exc:  # a retry then resumes: the thread has the answer
            logger.warning("recording a run's outcome failed: %s", type(exc).__name__)

    async def _running(self, turn: Turn, record: RunRecord) -> bool:
        """Whether the record's run runs, or waits for the session, somewhere alive."""
        if record.run_id in self._turns or record.run_id in self.pending:
            return True
        row = await self.store.get(turn.key)
        if row is not None and row.run_id == record.run_id and row.running():
            return await self._leases.holder_alive(row)
        if record.holder is None or record.holder == self._leases.holder:
            return False  # ended (resumably), or claimed here and known to be gone
        return await self._leases.alive(record.holder)  # claimed there, not running yet

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

    @staticmethod
    def _unavailable(run_id: str) -> RunEvent:
        return error_event(
            run_id,
            AgentUnavailableError(
                "the turn's earlier run ended without an outcome (its replica failed or it "
                "was cut off); retry with the same key to resume it"
            ),
        )

    async def _outcome(self, follower: Turn, spec: AgentSpec) -> None:
        """Wait for the followed run's outcome, then emit it (``unavailable`` when it
        ended without one, or the store cannot tell: a retry resumes it)."""
        outcome = self._unavailable(follower.run_id)
        try:
            outcome = await self._wait(follower, spec) or outcome
        except Exception as exc:  # the store failed: the client's retry asks again
            logger.warning("following a run failed: %s", type(exc).__name__)
        finally:
            follower.events.put_nowait(outcome)
            follower.events.put_nowait(None)

    async def _wait(self, follower: Turn, spec: AgentSpec) -> RunEvent | None:
        assert follower.idem is not None
        deadline = time.monotonic() + spec.budgets.max_seconds + self.config.lease_ttl_s
        ended = 0  # reads that found the run no longer running
        while time.monotonic() < deadline:
            record = await self.store.get_run(follower.thread_id, follower.idem)
            if record is None or record.run_id != follower.run_id:
                return None
            if record.outcome:
                return RunEvent.model_validate_json(record.outcome)
            if not await self._running(follower, record):
                ended += 1  # read once more: it may have recorded and released between
                if ended > 1:
                    return None
                continue
            local = self._turns.get(follower.run_id)
            if local is not None and local.task is not None:
                await asyncio.wait([local.task], timeout=self.config.poll_interval_s)
            else:
                await asyncio.sleep(self.config.poll_interval_s)
        return None
