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
from typing import Any

from runtime import _env

MASK = "[REDACTED]"

#: A key that names a secret: it ends so. ("max_tokens": 256 is not one: a token is a
#: secret, tokens are a count.)
_SECRET_KEY = re.compile(
    r"(?i)(?:api[_-]?key|secret|password|passwd|credentials?)$"
    r"|(?:^|[_-])(?:token|key|sig|signature)$"
)

#: (substrings, lower-case, one of which the text must hold; pattern; replacement).
#: The substrings are a cheap test that skips a pattern on most text (a log line is
#: redacted in microseconds: docs/observability.md#redaction).
_SHAPES: list[tuple[tuple[str, ...], re.Pattern[str], Any]] = [
    # "Authorization: Bearer x", "authorization=basic x", "x-api-key: x" (the whole value).
    (
        ("authorization", "api-key"),
        re.compile(
            r"(?i)\b(authorization|proxy-authorization|x-api-key|api-key)"
            r"(\"?'?\s*[:=]\s*\"?'?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;&]+"
        ),
        rf"\1\2{MASK}",
    ),
    (
        ("bearer", "basic"),
        re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"),
        rf"\1 {MASK}",
    ),
    # key=value and "key": "value" pairs whose key names a secret. The key is read
    # whole, from the start of its run of word characters and dashes only (a `\b`
    # would also start inside "a-b-c-…", rescanning the run from every dash:
    # quadratic), then judged by _SECRET_KEY.
    (
        ("key", "secret", "passw", "credential", "token", "sig"),
        re.compile(r"(?<![\w-])([\w-]++)(\"?'?\s*+[:=]\s*+\"?'?)([^\s\"',;&}?]{4,})"),
        lambda m: f"{m[1]}{m[2]}{MASK}" if _SECRET_KEY.search(m[1]) else m[0],
    ),
    # Keys by shape: the runtime's own (rt-), OpenAI/Anthropic and many proxies (sk-),
    # Google (AIza), AWS access key ids, GitHub, Slack, Stripe; JWTs.
    (
        ("rt-", "sk-", "aiza", "akia", "asia", "gh", "xox", "_live_", "_test_", "eyj"),
        re.compile(
            r"\b(?:rt-[A-Za-z0-9_-]{32,}|sk-[A-Za-z0-9_-]{16,}|AIza[0-9A-Za-z_-]{30,}|(?:AKIA|ASIA)[0-9A-Z]{16}\b"
            r"|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}"
            r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
            # A JWT only from the start of its run ("eyJ-eyJ-..." would start one at
            # every dash and rescan the run each time).
            r"|(?<![\w-])eyJ[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,}+\.[A-Za-z0-9_-]{8,})"
        ),
        MASK,
    ),
    # user:password@host, and :password@host (Redis' URLs have no user).
    (("@",), re.compile(r"(://)[^/\s:@]*+:[^/\s@]+@"), rf"\1{MASK}@"),
    # pydantic's "input_value='…'" (an invalid field's value: user input).
    (
        ("input_value=",),
        re.compile(r"input_value=.*?(?=, input_type=|$)", re.S),
        f"input_value={MASK}",
    ),
]

#: The most of one text the redactor reads; the rest is cut (with its length said).
#: Every pattern is linear, and this bounds the constant: a log line, span attribute or
#: error body longer than this is not one an operator reads whole.
MAX_CHARS = 32 * 1024

_SECRET_NAME = re.compile(r"(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|DSN|CREDENTIAL)")
#: Values shorter than this are not treated as secrets (they would mask common words).
_MIN_SECRET = 8


def secret_values(environ: dict[str, str] | None = None) -> set[str]:
    """Values of the environment variables whose names say they hold a secret."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_SECRET}


def _cut(text: str) -> str:
    """``text`` to its first MAX_CHARS, less the word the cut splits (its start could be
    a secret's, too short for a pattern to know it)."""
    head = text[:MAX_CHARS]
    end = max(head.rfind(c) for c in " \t\r\n")
    head = head[: max(end, 0)]
    return f"{head + ' ' if head else ''}[… {len(text) - len(head)} more chars cut]"


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
        if len(text) > MAX_CHARS:
            text = _cut(text)
        if self._values is not None:
            text = self._values.sub(MASK, text)
        lower = text.lower()
        for needles, pattern, replacement in _SHAPES:
            if any(n in lower for n in needles):
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


class RedactErrorBodies:
    """ASGI middleware: the body of every error answer (status 400 and up) redacted, for
    apps whose error handlers are not the runtime's (vLLM's routers on the LLM app)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}  # the start of an error answer, until its body is whole
        chunks: list[bytes] = []

        async def redacting_send(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"] = message
                return
            if message["type"] != "http.response.body" or "start" not in held:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = redact(b"".join(chunks).decode("utf-8", "replace")).encode()
            start = held.pop("start")
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, redacting_send)
