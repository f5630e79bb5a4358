"""JWT bearer tokens (``runtime.gateway.auth.JwtVerifier``): real RS256/ES256 keys (the
test issuer of tests/support/issuer.py), the issuer's JWKS from a file and from an HTTP
server on loopback. Through the running gateway: tests/cluster/test_gateway_routing.py."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from runtime.config.gateway import AuthConfig, JwtConfig
from runtime.errors import AuthenticationError
from runtime.gateway.auth import Authenticator, JwtVerifier, key_hash, new_key
from tests.support.issuer import AUDIENCE, ISSUER, ISSUER_KEYS, write_jwks


@pytest.fixture
def verifier(tmp_path: Path) -> JwtVerifier:
    config = JwtConfig(
        issuer=ISSUER, audience=AUDIENCE, jwks_file=str(write_jwks(tmp_path / "jwks.json"))
    )
    return JwtVerifier(config)


def _verify(verifier: JwtVerifier, token: str) -> Any:
    return asyncio.run(verifier.verify(token))


def test_valid_tokens_give_tenant_subject_and_scopes(verifier: JwtVerifier) -> None:
    principal = _verify(verifier, ISSUER_KEYS.token())
    assert (principal.tenant, principal.key_id) == ("acme", "jwt:user-1")
    # No `scope` claim: the default scopes, which allow nothing (was: everything).
    assert not principal.scopes.allows_model("anything") and not principal.scopes.admin
    assert not principal.scopes.allows_agent("anything")
    scoped = _verify(verifier, ISSUER_KEYS.token("e1", scope="model:tiny agent:* admin"))
    assert scoped.scopes.allows_model("tiny") and not scoped.scopes.allows_model("big")
    assert scoped.scopes.allows_agent("any") and scoped.scopes.admin


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: ISSUER_KEYS.token(exp=int(time.time()) - 120), "expired"),
        (lambda: ISSUER_KEYS.token(aud="someone-else"), "wrong audience"),
        (lambda: ISSUER_KEYS.token(iss="https://evil.test/"), "wrong issuer"),
        (lambda: ISSUER_KEYS.token(tenant=None), "`tenant` claim is missing"),
        (lambda: ISSUER_KEYS.token(sub=None), "`sub` claim is missing"),
        (lambda: ISSUER_KEYS.token(exp=None), "`exp` claim is missing"),
        # Forged: signed by another key under a known key id.
        (
            lambda: ISSUER_KEYS.token(
                key=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            ),
            "bad signature",
        ),
        (lambda: ISSUER_KEYS.token(kid="nope"), "unknown key"),
        # Algorithm confusion: HS256 keyed with the public key's bytes.
        (
            lambda: jwt.encode(
                {
                    "iss": ISSUER,
                    "aud": AUDIENCE,
                    "sub": "x",
                    "tenant": "t",
                    "exp": int(time.time()) + 60,
                },
                "a-shared-secret-of-32-bytes-min!",
                algorithm="HS256",
                headers={"kid": "r1"},
            ),
            "bad signature",
        ),
        (lambda: "a.b.c", "malformed"),
    ],
)
def test_bad_tokens_are_401(verifier: JwtVerifier, make: Any, reason: str) -> None:
    token = make()
    with pytest.raises(AuthenticationError) as err:
        _verify(verifier, token)
    assert err.value.status == 401 and reason in err.value.message
    assert token not in err.value.message


def test_jwks_url_is_fetched_and_refetched_on_rotation(tmp_path: Path) -> None:
    served: dict[str, Any] = {"jwks": {"keys": []}, "hits": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served["hits"] += 1
            data = json.dumps(served["jwks"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        verifier = JwtVerifier(JwtConfig(issuer=ISSUER, audience=AUDIENCE, jwks_url=url))
        verifier.REFETCH_MIN_S = 0.0  # rotation without waiting 30 s
        with pytest.raises(AuthenticationError, match="unknown key"):
            _verify(verifier, ISSUER_KEYS.token())
        served["jwks"] = ISSUER_KEYS.jwks()  # the issuer publishes its key
        assert _verify(verifier, ISSUER_KEYS.token()).tenant == "acme"
        hits = served["hits"]
        _verify(verifier, ISSUER_KEYS.token("e1"))  # cached: no fetch
        assert served["hits"] == hits
    finally:
        server.shutdown()


def test_authenticator_takes_keys_and_tokens(tmp_path: Path) -> None:
    key = new_key()
    config = AuthConfig.model_validate(
        {
            "keys": [{"id": "k", "tenant": "keyed", "sha256": key_hash(key)}],
            "jwt": {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "jwks_file": str(write_jwks(tmp_path / "jwks.json")),
            },
        }
    )
    auth = Authenticator(config)

    async def main() -> tuple[str, str]:
        by_key = await auth.authenticate(f"Bearer {key}")
        by_token = await auth.authenticate(f"Bearer {ISSUER_KEYS.token()}")
        return by_key.tenant, by_token.tenant

    assert asyncio.run(main()) == ("keyed", "acme")
    with pytest.raises(AuthenticationError, match="invalid API key"):
        asyncio.run(auth.authenticate("Bearer rt-wrong"))


@pytest.mark.parametrize(
    ("tenant", "reason"),
    [
        ("local", "names a tenant of API keys"),  # the local key's tenant: every scope
        ("keyed", "names a tenant of API keys"),
        ("a/b", "malformed"),
        ("local\n", "malformed"),  # `$` would let a trailing newline through
        ("x" * 200, "malformed"),
    ],
)
def test_a_tokens_tenant_may_not_alias_a_key_tenant(
    tmp_path: Path, tenant: str, reason: str
) -> None:
    config = AuthConfig.model_validate(
        {
            "keys": [{"id": "k", "tenant": "keyed", "sha256": key_hash(new_key())}],
            "jwt": {
                "issuer": ISSUER,
                "audience": AUDIENCE,
                "jwks_file": str(write_jwks(tmp_path / "jwks.json")),
            },
        }
    )
    auth = Authenticator(config)
    with pytest.raises(AuthenticationError, match=reason):
        asyncio.run(auth.authenticate(f"Bearer {ISSUER_KEYS.token(tenant=tenant)}"))
    shared = config.model_copy(
        update={"jwt": config.jwt.model_copy(update={"shared_tenants": ["keyed"]})}  # type: ignore[union-attr]
    )
    if tenant == "keyed":  # unless the config says the tenant is shared
        token = ISSUER_KEYS.token(tenant=tenant)
        assert asyncio.run(Authenticator(shared).authenticate(f"Bearer {token}")).tenant == "keyed"


def test_jwks_url_must_be_https_unless_on_this_machine() -> None:
    base = {"issuer": ISSUER, "audience": AUDIENCE}
    for bad in ("http://idp.example.com/jwks.json", "http://localhost:80@evil.example/jwks"):
        with pytest.raises(ValueError, match="jwks_url"):
            JwtConfig.model_validate({**base, "jwks_url": bad})
    for url in ("https://idp.example.com/jwks.json", "http://127.0.0.1:8080/jwks.json"):
        assert JwtConfig.model_validate({**base, "jwks_url": url}).jwks_url == url


def test_jwt_config_is_strict() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JwtConfig(issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(ValueError, match=r"HS256|literal"):
        JwtConfig.model_validate(
            {"issuer": ISSUER, "audience": AUDIENCE, "jwks_file": "/x", "algorithms": ["HS256"]}
        )


def test_a_token_signed_with_another_key_type_under_a_known_kid(verifier: JwtVerifier) -> None:
    forged = ISSUER_KEYS.token(key=ISSUER_KEYS.ec, kid="r1", alg="ES256")  # r1 is RSA
    with pytest.raises(AuthenticationError, match="bad signature or algorithm"):
        _verify(verifier, forged)
