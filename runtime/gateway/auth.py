"""API keys: hashing, lookup, and the principal a request runs as."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from runtime import _env
from runtime.config.gateway import TENANT_PATTERN, ApiKey, AuthConfig, JwtConfig, Scopes
from runtime.errors import AuthenticationError

logger = logging.getLogger("ray.serve")

KEY_PREFIX = "rt-"
#: A well-formed tenant name (the config's pattern for keys' tenants).
TENANT = re.compile(TENANT_PATTERN)


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
                    ApiKey(
                        id="local",
                        tenant=config.local_tenant,
                        sha256=digest,
                        scopes=Scopes(admin=True),
                    ),
                )

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, authorization: str | None) -> Principal:
        return self.lookup(bearer_token(authorization))

    def lookup(self, token: str) -> Principal:
        digest = key_hash(token)
        key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.sha256, digest):
            raise AuthenticationError("invalid API key")
        if key.revoked:
            raise AuthenticationError("this API key has been revoked")
        return Principal(key_id=key.id, tenant=key.tenant, scopes=key.scopes)


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError("missing API key: send `Authorization: Bearer <key>`")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("malformed Authorization header: expected `Bearer <key>`")
    return token.strip()


def looks_like_jwt(token: str) -> bool:
    return not token.startswith(KEY_PREFIX) and token.count(".") == 2


def scopes_from_claim(claim: Any, default: Scopes) -> Scopes:
    """``scope``: space-separated ``model:<name>``, ``agent:<name>`` and ``admin``."""
    if claim is None:
        return default
    if not isinstance(claim, str):
        raise AuthenticationError("invalid token (the `scope` claim must be a string)")
    models: list[str] = []
    agents: list[str] = []
    admin = False
    for item in claim.split():
        kind, _, name = item.partition(":")
        if kind == "model" and name:
            models.append(name)
        elif kind == "agent" and name:
            agents.append(name)
        elif item == "admin":
            admin = True
    return Scopes(models=models, agents=agents, admin=admin)


class JwtVerifier:
    """Checks bearer JWTs against the issuer's public keys (a JWKS file or URL).

    Keys from a URL are cached for ``jwks_cache_s``; a token signed by an unknown key
    id refetches them (at most every 30 s), so a key rotation needs no restart.
    """

    REFETCH_MIN_S = 30.0

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        #: Tenants of API keys, which a token may name only if `shared_tenants` does.
        self.reserved_tenants: set[str] = set()
        self._keys: dict[str, Any] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()
        if config.jwks_file is not None:
            self._keys = self._parse(json.loads(Path(config.jwks_file).read_text()))

    @staticmethod
    def _parse(data: Any) -> dict[str, Any]:
        keys = jwt.PyJWKSet.from_dict(data)
        return {k.key_id or "": k for k in keys.keys}

    async def _key(self, kid: str) -> Any:
        if self.config.jwks_url is None:
            return self._keys.get(kid)
        now = time.monotonic()
        expired = now - self._fetched > self.config.jwks_cache_s
        unknown = kid not in self._keys and now - self._fetched > self.REFETCH_MIN_S
        if expired or unknown:
            async with self._lock:
                if time.monotonic() - self._fetched > min(
                    self.REFETCH_MIN_S, self.config.jwks_cache_s
                ):
                    await self._fetch()
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        assert self.config.jwks_url is not None
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(self.config.jwks_url)
                response.raise_for_status()
                self._keys = self._parse(response.json())
        except Exception as exc:  # keep the keys we have
            logger.warning("could not fetch the JWKS: %s", type(exc).__name__)
        finally:
            self._fetched = time.monotonic()

    async def verify(self, token: str) -> Principal:
        c = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("invalid token (malformed)") from None
        algorithm = header.get("alg")
        if algorithm not in c.algorithms:
            raise AuthenticationError("invalid token (bad signature or algorithm)")
        key = await self._key(str(header.get("kid", "")))
        if key is None:
            raise AuthenticationError("invalid token (signed by an unknown key)")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=c.audience,
                issuer=c.issuer,
                leeway=c.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("invalid token (expired)") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("invalid token (wrong audience)") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("invalid token (wrong issuer)") from None
        except jwt.MissingRequiredClaimError as err:
            raise AuthenticationError(
                f"invalid token (the `{err.claim}` claim is missing)"
            ) from None
        except (jwt.PyJWTError, ValueError, TypeError):  # incl. a key of the wrong type
            raise AuthenticationError("invalid token (bad signature or algorithm)") from None
        tenant = claims.get(c.tenant_claim)
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationError(f"invalid token (the `{c.tenant_claim}` claim is missing)")
        if not TENANT.fullmatch(tenant):
            raise AuthenticationError(f"invalid token (the `{c.tenant_claim}` claim is malformed)")
        if tenant in self.reserved_tenants and tenant not in c.shared_tenants:
            raise AuthenticationError(
                f"invalid token (the `{c.tenant_claim}` claim names a tenant of API keys)"
            )
        scopes = scopes_from_claim(claims.get("scope"), c.default_scopes)
        return Principal(key_id=f"jwt:{claims['sub']}", tenant=tenant, scopes=scopes)


class Authenticator:
    """API keys, and JWTs when configured: ``await auth.authenticate(header)``."""

    def __init__(self, config: AuthConfig) -> None:
        self.keys = KeyStore(config)
        self.jwt = JwtVerifier(config.jwt) if config.jwt is not None else None
        if self.jwt is not None:  # a token's tenant may not alias a key's
            self.jwt.reserved_tenants = {k.tenant for k in config.keys} | {config.local_tenant}

    def __len__(self) -> int:
        return len(self.keys) + (1 if self.jwt is not None else 0)

    async def authenticate(self, authorization: str | None) -> Principal:
        token = bearer_token(authorization)
        if self.jwt is not None and looks_like_jwt(token):
            return await self.jwt.verify(token)
        return self.keys.lookup(token)
