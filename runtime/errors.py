"""Every error the runtime raises on purpose, in one tree, with one body shape.

Each error has an HTTP ``status``, a stable ``type`` string, a ``message`` (redacted:
error bodies, events and logs never carry a secret) and an optional ``param`` (the
request field at fault). The same classes travel over Serve handles (Ray re-raises
them in the caller) and over HTTP, where every route of the gateway and of the LLM
deployment answers OpenAI's body::

    {"error": {"message": "...", "type": "...", "param": null, "code": 404, "status": 404}}

and the SDK raises the class again from it (:meth:`APIError.from_body`).

The tree (status in brackets; ``type`` on the wire in quotes)::

    APIError [500] "internal_error"        the base; AgentError is the same class
    ├── LLMError [any]                     the model's or a provider's answer, e.g.
    │   │                                  "BadRequestError" [400], "NotFoundError" [404]
    │   └── ModelUnavailableError [503]    "ServiceUnavailableError": no replica,
    │                                      saturated, provider down: a fallback may answer
    ├── InvalidInputError [400]            "invalid_input": a malformed request
    ├── RequestTimeoutError [408]          "request_timeout": the body came too slowly
    ├── RequestTooLargeError [413]         "RequestTooLarge"
    ├── AuthenticationError [401]          "authentication_error"
    ├── PermissionDeniedError [403]        "permission_error": the key's scopes
    ├── AgentNotFoundError [404]           "agent_not_found"
    ├── SessionNotFoundError [404]         "session_not_found"
    ├── SessionExistsError [409]           "session_exists"
    ├── SessionBusyError [409]             "session_busy"
    ├── RunCancelledError [409]            "run_cancelled"
    ├── BudgetExceededError [422]          "budget_exceeded": steps, tokens or seconds
    ├── RateLimitError [429]               "rate_limit_error": the one rate-limit class
    │                                      (requests, tokens, concurrency; retry_after)
    ├── RunFailedError [500]               "run_failed"
    ├── ModelCallError [502]               "model_error": an agent's LLM call failed
    └── UnavailableError [503]             "unavailable": retry later
        ├── AgentUnavailableError          no agent replica, saturated, or it died
        │   └── LeaseLostError             a turn lost its session's lease: it stopped
        └── LimiterUnavailableError        the rate-limit storage is unreachable
"""

from __future__ import annotations

from typing import Any, ClassVar

from runtime.telemetry.redact import redact

_Class = type["APIError"]

#: The most of a client's value an error message repeats (a model or agent name).
ECHO_CHARS = 64


def quote(value: object, limit: int = ECHO_CHARS) -> str:
    """A client's value for an error message: quoted, and cut to ``limit`` characters
    (a hostile value must not make the answer, the log line or the redactor's work as
    large as the request).

        >>> quote("x" * 100, limit=4)
        "'xxxx…' (100 chars)"
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit] + '…'!r} ({len(text)} chars)"


class APIError(Exception):
    """Base of every error the runtime raises on purpose.

    Example::

        >>> err = SessionNotFoundError("no session 's1' for agent 'assistant'")
        >>> (err.status, err.type)
        (404, 'session_not_found')
    """

    status: int = 500
    type: str = "internal_error"
    #: Shown as ``Retry-After`` by the gateway (seconds), when set.
    retry_after: int | None = None
    _by_type: ClassVar[dict[str, _Class]] = {}

    def __init__(
        self,
        message: str,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
    ) -> None:
        message = redact(message)  # an upstream's message may quote a key
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.param = param

    #: Attributes beyond the message that travel with a copy (handles, ``plain``).
    _extra: ClassVar[tuple[str, ...]] = ("retry_after",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The class a body's `type` names (the first class to declare a type owns it).
        if "type" in cls.__dict__:
            APIError._by_type.setdefault(cls.__dict__["type"], cls)

    def to_body(self) -> dict[str, Any]:
        """OpenAI's error body, plus ``status`` (the SDK's name for ``code``)."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.status,
                "status": self.status,
            }
        }

    @classmethod
    def from_body(cls, body: Any, status: int = 500) -> APIError:
        """The error a body describes (``status``: the HTTP status it came with): the
        class its ``type`` names, else ``cls`` with the body's status and type."""
        err = body.get("error", body) if isinstance(body, dict) else None
        if not isinstance(err, dict):
            return cls(f"HTTP {status}: {str(body)[:200]}", status)
        kind = str(err.get("type") or "InternalServerError")
        try:
            code = int(err.get("status") or err.get("code") or status)
        except (TypeError, ValueError):  # OpenAI's `code` may be a string
            code = status
        message = str(err.get("message", "unknown error"))
        known = APIError._by_type.get(kind)
        # Only a class of the kind asked for (a provider's "authentication_error" is the
        # model's error, not the caller's), at its status (LLMError takes any).
        if (
            known is not None
            and issubclass(known, cls)
            and (known.status == code or known is LLMError)
        ):
            return known._remake(message, code, kind, err.get("param"))
        return cls(message, code, kind, err.get("param"))

    @classmethod
    def _remake(cls, message: str, status: int, type: str, param: Any) -> APIError:
        return cls(message, status, type, param)

    @staticmethod
    def cause(exc: BaseException) -> BaseException:
        """The error a remote call raised: Ray re-raises it wrapped in a subclass of its
        class and of ``RayTaskError``, whose class attributes (``status``, ``type``)
        would hide the instance's own; the wrapper's ``cause`` holds the original."""
        original = getattr(exc, "cause", None)
        return original if isinstance(original, APIError) else exc

    @staticmethod
    def plain(exc: APIError) -> APIError:
        """The runtime's own class of ``exc`` (Ray re-raises remote errors as subclasses
        of theirs and of ``RayTaskError``: see :meth:`cause`)."""
        original = APIError.cause(exc)
        exc = original if isinstance(original, APIError) else exc
        ours = (c for c in type(exc).__mro__ if c.__module__ == __name__)
        cls: _Class = next(ours, APIError)
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
        copy = cls._remake(str(message), exc.status, exc.type, exc.param)
        for name in cls._extra:
            setattr(copy, name, getattr(exc, name, None))
        return copy

    @staticmethod
    def from_remote(exc: BaseException) -> APIError:
        """What a caller of the agent deployment raises for ``exc``: the runtime's own
        error, or :class:`AgentUnavailableError` for anything else (replica died, no
        replica, back-pressure)."""
        if isinstance(exc, APIError):
            return APIError.plain(exc)
        if type(exc).__name__ == "BackPressureError":  # Serve's max_queued_requests
            return AgentUnavailableError(
                "the agent service is saturated (its request queue is full); retry later"
            )
        return AgentUnavailableError(
            f"the agent service failed during the call ({type(exc).__name__}); the session "
            "keeps its last checkpoint, retrying is safe"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        extra = {name: getattr(self, name, None) for name in self._extra}
        return (_rebuild, (type(self), self.message, self.status, self.type, self.param, extra))


def _rebuild(
    cls: _Class, message: str, status: int, type: str, param: Any, extra: dict[str, Any]
) -> APIError:
    err = cls._remake(message, status, type, param)
    for name, value in extra.items():
        setattr(err, name, value)
    return err


#: The name the SDK documents for its errors: the same class as :class:`APIError`.
AgentError = APIError


class LLMError(APIError):
    """An OpenAI-style error of a model: its status and type are the model's."""

    status = 400
    type = "BadRequestError"


class ModelUnavailableError(LLMError):
    """The model cannot answer now (no running replica, saturated, a provider's
    retries exhausted or circuit open): the model's fallback, if any, answers."""

    status = 503
    type = "ServiceUnavailableError"
    retry_after = 1

    def __init__(self, message: str, *args: Any) -> None:
        super().__init__(message, 503, "ServiceUnavailableError")

    @classmethod
    def _remake(cls, message: str, status: int, type: str, param: Any) -> APIError:
        return cls(message)


class InvalidInputError(APIError):
    """The request is malformed (empty or over-long message, bad session id, a field)."""

    status = 400
    type = "invalid_input"


class RequestTooLargeError(APIError):
    status = 413
    type = "RequestTooLarge"


class RequestTimeoutError(APIError):
    """The request's body did not arrive in time (a client trickling it)."""

    status = 408
    type = "request_timeout"


class AuthenticationError(APIError):
    """No API key, or a wrong or revoked one."""

    status = 401
    type = "authentication_error"


class PermissionDeniedError(APIError):
    """The key may not call this agent or model."""

    status = 403
    type = "permission_error"


class AgentNotFoundError(APIError):
    status = 404
    type = "agent_not_found"


class SessionNotFoundError(APIError):
    """No such session for this tenant (another tenant's session looks the same)."""

    status = 404
    type = "session_not_found"


class SessionExistsError(APIError):
    status = 409
    type = "session_exists"


class SessionBusyError(APIError):
    """The session's previous turn is still running and the agent's policy is `reject`,
    or a queued message waited longer than the run's time budget."""

    status = 409
    type = "session_busy"


class RunCancelledError(APIError):
    """The run was cancelled by the client, or interrupted by a newer message."""

    status = 409
    type = "run_cancelled"


class BudgetExceededError(APIError):
    """A run hit one of its budgets (steps, tokens, seconds); its completed steps are kept."""

    status = 422
    type = "budget_exceeded"


class RateLimitError(APIError):
    """A rate, token or concurrency limit of the tenant, key or provider is reached;
    retry after ``retry_after`` seconds. ``limit`` names which (a metrics label:
    requests, tokens, concurrency)."""

    status = 429
    type = "rate_limit_error"
    _extra = ("retry_after", "limit")

    def __init__(self, message: str, retry_after: int = 1, limit: str = "requests") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit

    @classmethod
    def _remake(cls, message: str, status: int, type: str, param: Any) -> APIError:
        return cls(message)


class RunFailedError(APIError):
    """The run failed inside the runtime or the agent's code; the session keeps its last
    checkpoint and the next message continues from it."""

    status = 500
    type = "run_failed"


class ModelCallError(APIError):
    """An agent's LLM call failed (the model's own error is summarised)."""

    status = 502
    type = "model_error"


class UnavailableError(APIError):
    """The service cannot take the call now; retrying later is safe."""

    status = 503
    type = "unavailable"
    retry_after = 1


class AgentUnavailableError(UnavailableError):
    """The agents cannot take the call now: no replica, overloaded, or the replica died
    during the call. Sessions keep their last checkpoint; retrying is safe."""


class LeaseLostError(AgentUnavailableError):
    """A turn lost its session's lease (its replica stalled or lost the database past
    the lease's time, and the session may be another turn's now): it stopped before
    writing another checkpoint. On the wire: "unavailable"."""


class LimiterUnavailableError(UnavailableError):
    """The rate-limit storage cannot be reached and ``on_storage_failure`` is ``refuse``."""


# Over HTTP an "unavailable" body is the agents' (the SDK's callers retry either way).
APIError._by_type["unavailable"] = AgentUnavailableError
# vLLM's and OpenAI's own error types, under any status: the model's errors.
for _kind in ("NotFoundError", "InternalServerError", "UpstreamError", "RateLimitError"):
    APIError._by_type[_kind] = LLMError
