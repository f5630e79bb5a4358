"""How a turn ended, as the error its client sees (completed steps are always kept)."""

from __future__ import annotations

import asyncio
import logging

from langgraph.errors import GraphRecursionError

from runtime.agents.protocol import RunEvent
from runtime.config.agents import Budgets
from runtime.errors import (
    AgentUnavailableError,
    APIError,
    BudgetExceededError,
    LeaseLostError,
    RunCancelledError,
    RunFailedError,
)

logger = logging.getLogger("ray.serve")


def failure(
    exc: BaseException,
    budgets: Budgets,
    reason: str | None,
    lease_lost: bool = False,
    stopping: bool = False,
) -> APIError:
    """The error a turn that raised ``exc`` ends with (``reason``: why it was cancelled;
    ``lease_lost``: it was stopped because its lease may be another turn's;
    ``stopping``: because its replica is stopping)."""
    if stopping and isinstance(exc, asyncio.CancelledError):
        return AgentUnavailableError(
            f"{reason or 'the replica is stopping'}; the turn stopped at its last "
            "checkpoint: retry it (with its idempotency key) to resume it elsewhere"
        )
    if lease_lost and not isinstance(exc, LeaseLostError):
        return LeaseLostError(
            f"{reason or 'the turn lost its session lease'}; the session keeps its last checkpoint"
        )
    if isinstance(exc, asyncio.CancelledError):
        return RunCancelledError(f"{reason or 'the run was cancelled'}; completed steps are kept")
    if isinstance(exc, TimeoutError):
        return BudgetExceededError(
            f"the run took longer than its budget of {budgets.max_seconds:g} s; "
            "completed steps are kept"
        )
    if isinstance(exc, GraphRecursionError):
        return BudgetExceededError(
            f"the run needed more than its budget of {budgets.max_steps} steps; "
            "completed steps are kept"
        )
    if isinstance(exc, APIError):
        return exc
    if store_unreachable(exc):
        return AgentUnavailableError(
            f"the session store is unreachable ({type(exc).__name__}); the turn stopped at "
            "its last checkpoint: retry it (with its idempotency key) to resume it"
        )
    logger.error("agent run failed (%s)", type(exc).__name__, exc_info=exc)
    return RunFailedError(
        f"the run failed ({type(exc).__name__}); the session continues from its last completed step"
    )


def store_unreachable(exc: BaseException) -> bool:
    """A connection-level failure of PostgreSQL (a restart, a failover, a cut network,
    no connection free in the pool): nothing about the turn is wrong, and a retry with
    its idempotency key resumes it once the database answers."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # the PostgreSQL store is not installed: not its error
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout)


def error_event(run_id: str, err: APIError) -> RunEvent:
    return RunEvent(type="error", run_id=run_id, error=err.to_body()["error"])


def label(outcome: RunEvent) -> str:
    """The outcome's metrics label: ``ok``, or the error's type."""
    if outcome.type == "final":
        return "ok"
    return str((outcome.error or {}).get("type", "error"))
