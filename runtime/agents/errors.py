"""Errors of agent runs and sessions: the same classes over handles and over HTTP.

Each has an HTTP status and a stable ``type`` string; over HTTP the body is
``{"error": {"type", "message", "status"}}`` and the SDK raises the class again.
Messages never quote the user's input or the model's output.
"""

from __future__ import annotations

from typing import Any, ClassVar

from runtime.telemetry.redact import redact


class AgentError(Exception):
    """Base of every agent error the runtime raises on purpose."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "agent_error"

    def __init__(self, message: str) -> None:
        message = redact(message)  # error bodies and events never carry a secret
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, Any]:
        return {"error": {"type": self.type, "message": self.message, "status": self.status}}

    @staticmethod
    def from_body(body: Any, status: int) -> AgentError:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return AgentError(f"HTTP {status}: {str(body)[:200]}")
        cls: type[AgentError] = _BY_TYPE.get(str(err.get("type")), AgentError)
        return cls(str(err.get("message", "")))

    @staticmethod
    def plain(exc: AgentError) -> AgentError:
        """The runtime's own class of ``exc`` (Ray re-raises remote errors as subclasses)."""
        classes = set(_BY_TYPE.values())
        cls: type[AgentError] = next((c for c in type(exc).__mro__ if c in classes), AgentError)
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        return cls(str(message))

    @staticmethod
    def from_remote(exc: BaseException) -> AgentError:
        """What a caller of the agent deployment raises for ``exc``: the runtime's own
        error, or :class:`AgentUnavailableError` for anything else (replica died, no
        replica, back-pressure)."""
        if isinstance(exc, AgentError):
            return AgentError.plain(exc)
        if type(exc).__name__ == "BackPressureError":  # Serve's max_queued_requests
            return AgentUnavailableError(
                "the agent service is saturated (its request queue is full); retry later"
            )
        return AgentUnavailableError(
            f"the agent service failed during the call ({type(exc).__name__}); the session "
            "keeps its last checkpoint, retrying is safe"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message,))


class InvalidInputError(AgentError):
    """The request is malformed (empty or over-long message, bad session id)."""

    status = 400
    type = "invalid_input"


class AuthenticationError(AgentError):
    """No API key, or a wrong or revoked one (from the gateway)."""

    status = 401
    type = "authentication_error"


class PermissionDeniedError(AgentError):
    """The key may not call this agent or model (from the gateway)."""

    status = 403
    type = "permission_error"


class AgentNotFoundError(AgentError):
    status = 404
    type = "agent_not_found"


class SessionNotFoundError(AgentError):
    """No such session for this tenant (another tenant's session looks the same)."""

    status = 404
    type = "session_not_found"


class SessionExistsError(AgentError):
    status = 409
    type = "session_exists"


class SessionBusyError(AgentError):
    """The session's previous turn is still running and the agent's policy is `reject`,
    or a queued message waited longer than the run's time budget."""

    status = 409
    type = "session_busy"


class BudgetExceededError(AgentError):
    """A run hit one of its budgets (steps, tokens, seconds); its completed steps are kept."""

    status = 422
    type = "budget_exceeded"


class RunCancelledError(AgentError):
    """The run was cancelled by the client, or interrupted by a newer message."""

    status = 409
    type = "run_cancelled"


class ModelCallError(AgentError):
    """The LLM call failed (the LLM deployment's own error is summarised)."""

    status = 502
    type = "model_error"


class RunFailedError(AgentError):
    """The run failed inside the runtime or the agent's code; the session keeps its last
    checkpoint and the next message continues from it."""

    status = 500
    type = "run_failed"


class RateLimitError(AgentError):
    """A rate or concurrency limit of the tenant or key is reached (from the gateway);
    retry after the `Retry-After` seconds."""

    status = 429
    type = "rate_limit_error"


class AgentUnavailableError(AgentError):
    """The agents cannot take the call now: no replica, overloaded, or the replica died
    during the call. Sessions keep their last checkpoint; retrying is safe."""

    status = 503
    type = "unavailable"


_BY_TYPE: dict[str, type[AgentError]] = {
    cls.type: cls
    for cls in (
        AgentError,
        InvalidInputError,
        AuthenticationError,
        PermissionDeniedError,
        AgentNotFoundError,
        SessionNotFoundError,
        SessionExistsError,
        SessionBusyError,
        BudgetExceededError,
        RunCancelledError,
        ModelCallError,
        RunFailedError,
        RateLimitError,
        AgentUnavailableError,
    )
}
