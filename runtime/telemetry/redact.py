"""Redaction: what must never reach a log file, a span or an error body.

Three kinds of text are removed:

* **secrets by shape**: bearer and basic credentials, provider keys (``sk-…``, Google,
  AWS, GitHub, Slack, Stripe), JWTs, ``api_key=…``/``password: …`` pairs, passwords in
  URLs, and pydantic's echo of an invalid input (``input_value=…``);
* **secrets by value**: the values of this process's environment variables whose names
  say they hold one (``*KEY*``, ``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*DSN*``,
  ``*CREDENTIAL*``), such as ``$RUNTIME_API_KEY`` or a provider's ``api_key_env``;
* **configured patterns**: regular expressions from an application's
  ``args.telemetry.redact_patterns`` (customer ids, account numbers…).

Prompts and completions have no shape: the runtime never puts them in a log record or
a span attribute unless ``$RUNTIME_LOG_CONTENT`` is ``1`` (``content()``), and error
bodies name fields, never echo values.

    >>> Redactor().redact("Authorization: Bearer abcdefghijklmnop")
    'Authorization: [REDACTED]'
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from runtime import _env

MASK = "[REDACTED]"

_SHAPES: list[tuple[re.Pattern[str], str]] = [
    # "Authorization: Bearer x", "authorization=basic x", "x-api-key: x" (the whole value).
    (
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key)"
            r"(\"?'?\s*[:=]\s*\"?'?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;&]+"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\1 {MASK}"),
    # key=value and "key": "value" pairs whose key names a secret.
    # ("max_tokens": 256 is not one: a token is a secret, tokens are a count.)
    (
        re.compile(
            r"(?i)\b([\w-]*(?:api[_-]?key|secret|password|passwd|credentials?)"
            r"|(?:[\w-]*[_-])?token)\b(\"?'?\s*[:=]\s*\"?'?)[^\s\"',;&}]{4,}"
        ),
        rf"\1\2{MASK}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), MASK),  # OpenAI, Anthropic, many proxies
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), MASK),  # Google
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),  # AWS access key ids
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"), MASK),  # GitHub
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), MASK),  # Slack
    (re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"), MASK),  # Stripe
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), MASK),  # JWT
    (re.compile(r"(://)[^/\s:@]+:[^/\s@]+@"), rf"\1{MASK}@"),  # user:password@host
    # pydantic's "input_value='…'" (an invalid field's value: user input).
    (re.compile(r"input_value=.*?(?=, input_type=|$)", re.S), f"input_value={MASK}"),
]

_SECRET_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|DSN|CREDENTIAL)")
#: Values shorter than this are not treated as secrets (they would mask common words).
_MIN_SECRET = 8


def secret_values(environ: dict[str, str] | None = None) -> set[str]:
    """Values of the environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET}


class Redactor:
    """Removes secrets and configured patterns from text (thread-safe, immutable)."""

    def __init__(self, patterns: Iterable[str] = (), secrets: Iterable[str] = ()) -> None:
        self.patterns = tuple(patterns)
        self._configured = [re.compile(p) for p in self.patterns]
        values = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._values = re.compile("|".join(map(re.escape, values))) if values else None

    @classmethod
    def from_env(cls, patterns: Iterable[str] = ()) -> Redactor:
        return cls(patterns, secret_values())

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._values is not None:
            text = self._values.sub(MASK, text)
        for pattern, replacement in _SHAPES:
            text = pattern.sub(replacement, text)
        for pattern in self._configured:
            text = pattern.sub(MASK, text)
        return text


_current = Redactor.from_env()


def configure(patterns: Iterable[str] = ()) -> Redactor:
    """The process's redactor: the environment's secrets now, and these patterns (added
    to those of earlier calls: one process may host more than one application)."""
    global _current
    _current = Redactor([*_current.patterns, *patterns], secret_values())
    return _current


def redact(text: str) -> str:
    """``text`` without secrets or configured patterns (the process's redactor)."""
    return _current.redact(text)


def content_allowed() -> bool:
    """True when ``$RUNTIME_LOG_CONTENT`` lets prompts and completions be recorded."""
    return _env.log_content()


def content(text: str) -> str:
    """A prompt or completion for a log record or span: its size only, unless allowed."""
    if content_allowed():
        return redact(text)
    return f"[content: {len(text)} chars]"
