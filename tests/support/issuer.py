"""A test identity provider: RS256 and ES256 signing keys made once per process, their
JWKS and signed tokens (tests/unit/test_gateway_jwt.py verifies them in-process,
tests/cluster/test_gateway_routing.py through a running gateway)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ISSUER = "https://idp.example.test/"
AUDIENCE = "agent-runtime"


class Issuer:
    """An identity provider: signing keys and their JWKS."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key, alg in (("r1", self.rsa, "RS256"), ("e1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def token(self, kid: str = "r1", key: Any = None, alg: str | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "tenant": "acme",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        signing = key or (self.rsa if kid == "r1" else self.ec)
        algorithm = alg or ("RS256" if kid == "r1" else "ES256")
        return jwt.encode(payload, signing, algorithm=algorithm, headers={"kid": kid})


ISSUER_KEYS = Issuer()


def write_jwks(path: Path) -> Path:
    path.write_text(json.dumps(ISSUER_KEYS.jwks()))
    return path
