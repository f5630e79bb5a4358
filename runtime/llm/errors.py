"""Errors of the LLM deployment's handle API, shaped like OpenAI's error bodies."""

from __future__ import annotations

from typing import Any

from runtime.telemetry.redact import redact


class LLMError(Exception):
    """An OpenAI-style error from the LLM deployment.

    Raised through a deployment handle (Ray re-raises it in the caller, so
    ``except LLMError`` works there); over HTTP the same error is the body.
    """

    def __init__(
        self,
        message: str,
        status_code: int = 400,
        type: str = "BadRequestError",
        param: str | None = None,
    ) -> None:
        message = redact(message)  # an upstream provider's message may quote a key
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.param = param

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> LLMError:
        err = body.get("error", body)
        return cls(
            message=str(err.get("message", "unknown error")),
            status_code=int(err.get("code") or 500),
            type=str(err.get("type", "InternalServerError")),
            param=err.get("param"),
        )

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.status_code,
            }
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.status_code, self.type, self.param))
