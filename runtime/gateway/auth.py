"""API keys: hashing, lookup, and the principal a request runs as."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from runtime import _env
from runtime.config.gateway import ApiKey, AuthConfig, Scopes

KEY_PREFIX = "rt-"


def new_key() -> str:
    """A new API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who calls: the key's id, its tenant and its scopes."""

    key_id: str
    tenant: str
    scopes: Scopes


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class KeyStore:
    """Looks up presented keys by hash; the keys themselves are never kept."""

    def __init__(self, config: AuthConfig) -> None:
        self._by_hash: dict[str, ApiKey] = {k.sha256: k for k in config.keys}
        if config.local_key_env:
            local = _env.optional(config.local_key_env)
            if local:
                digest = key_hash(local)
                self._by_hash.setdefault(
                    digest,
                    ApiKey(id="local", tenant=config.local_tenant, sha256=digest,
                           scopes=Scopes(admin=True)),
                )  # fmt: skip

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError(401, "missing API key: send `Authorization: Bearer <key>`")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "malformed Authorization header: expected `Bearer <key>`")
        digest = key_hash(token.strip())
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise AuthError(401, "invalid API key")
        if key.revoked:
            raise AuthError(401, "this API key has been revoked")
        return Principal(key_id=key.id, tenant=key.tenant, scopes=key.scopes)
