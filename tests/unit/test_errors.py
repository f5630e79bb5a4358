"""The one error tree (runtime/errors.py): statuses, types, one body shape, round trips."""

from __future__ import annotations

import pickle

import pytest

import runtime
from runtime import errors
from runtime.errors import (
    AgentError,
    AgentUnavailableError,
    APIError,
    LLMError,
    ModelUnavailableError,
    RateLimitError,
    SessionBusyError,
)


def _classes() -> list[type[APIError]]:
    found = [APIError]
    for cls in found:
        found += [c for c in cls.__subclasses__() if c.__module__ == errors.__name__]
    return found


def test_every_error_has_a_status_and_a_type_and_one_body_shape() -> None:
    for cls in _classes():
        err = cls("something went wrong")
        body = err.to_body()
        assert set(body) == {"error"}
        assert set(body["error"]) == {"message", "type", "param", "code", "status"}
        assert body["error"]["code"] == body["error"]["status"] == err.status
        assert 400 <= err.status < 600 and err.type


def test_agent_error_is_the_base_the_sdk_documents() -> None:
    assert AgentError is APIError
    assert issubclass(runtime.RateLimitError, runtime.AgentError)
    assert issubclass(runtime.LLMError, runtime.AgentError)


@pytest.mark.parametrize(
    "err",
    [
        SessionBusyError("busy"),
        RateLimitError("slow down", retry_after=7, limit="concurrency"),
        LLMError("no such model", 404, "NotFoundError", "model"),
        ModelUnavailableError("no replica"),
    ],
)
def test_a_body_and_a_pickle_give_the_same_error_back(err: APIError) -> None:
    for copy in (APIError.from_body(err.to_body(), err.status), pickle.loads(pickle.dumps(err))):
        assert type(copy) is type(err)
        assert (copy.status, copy.type, copy.message, copy.param) == (
            err.status,
            err.type,
            err.message,
            err.param,
        )
    again = pickle.loads(pickle.dumps(err))
    assert again.retry_after == err.retry_after
    assert getattr(again, "limit", None) == getattr(err, "limit", None)


def test_an_unknown_type_keeps_its_status_and_type() -> None:
    err = APIError.from_body({"error": {"type": "weird", "message": "x", "code": 418}}, 418)
    assert (type(err), err.status, err.type) == (APIError, 418, "weird")
    assert isinstance(LLMError.from_body({"error": {"type": "weird", "code": 418}}), LLMError)
    assert APIError.from_body(b"not json", 502).status == 502


def test_unavailable_bodies_are_the_agents_and_retryable() -> None:
    err = APIError.from_body({"error": {"type": "unavailable", "status": 503}}, 503)
    assert isinstance(err, AgentUnavailableError) and err.retry_after == 1


def test_plain_recovers_the_class_of_a_subclass() -> None:
    class Remote(SessionBusyError):  # as Ray re-raises a remote error
        pass

    copy = APIError.plain(Remote("busy"))
    assert type(copy) is SessionBusyError and copy.message == "busy"


def test_messages_are_redacted() -> None:
    key = "sk-" + "a" * 40
    assert key not in LLMError(f"upstream said: bad key {key}").message


@pytest.mark.parametrize(
    "err",
    [
        LLMError("no such model", 404, "NotFoundError", "model"),
        RateLimitError("slow down", retry_after=7, limit="tokens"),
        ModelUnavailableError("no replica"),
    ],
)
def test_an_error_raised_through_ray_keeps_its_status_type_and_extras(err: APIError) -> None:
    """Ray re-raises a replica's error as a subclass of its class and RayTaskError, whose
    class attributes would hide the instance's own status and type."""
    from ray.exceptions import RayTaskError

    wrapped = RayTaskError("call", "Traceback ...", err).as_instanceof_cause()
    assert isinstance(wrapped, type(err))
    for copy in (APIError.plain(wrapped), APIError.from_remote(wrapped)):
        assert type(copy) is type(err)
        assert (copy.status, copy.type, copy.retry_after) == (err.status, err.type, err.retry_after)
        assert getattr(copy, "limit", None) == getattr(err, "limit", None)
    assert APIError.cause(wrapped) is err


def test_a_providers_error_type_never_becomes_the_callers() -> None:
    body = {"error": {"type": "authentication_error", "code": 401, "message": "bad key"}}
    err = LLMError.from_body(body)
    assert type(err) is LLMError and err.status == 401
    no_type = LLMError.from_body({"error": {"message": "boom", "code": "oops"}}, 500)
    assert (no_type.status, no_type.type) == (500, "InternalServerError")
