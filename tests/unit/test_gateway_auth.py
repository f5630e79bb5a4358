"""API keys without a cluster: hashing, lookup, revocation, the local key, scopes."""

from __future__ import annotations

import pytest

from runtime.config.gateway import AuthConfig, GatewayAppConfig, Scopes
from runtime.errors import AuthenticationError
from runtime.gateway.auth import KeyStore, key_hash, new_key


def test_new_keys_are_random_and_hash_to_hex() -> None:
    a, b = new_key(), new_key()
    assert a != b and a.startswith("rt-") and len(a) > 40
    assert len(key_hash(a)) == 64 and key_hash(a) == key_hash(a)


def test_lookup_revocation_and_malformed_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    good, old = new_key(), new_key()
    store = KeyStore(
        AuthConfig.model_validate(
            {
                "keys": [
                    {
                        "id": "g",
                        "tenant": "t1",
                        "sha256": key_hash(good),
                        "scopes": {"models": ["m1"], "agents": []},
                    },
                    {"id": "o", "tenant": "t1", "sha256": key_hash(old), "revoked": True},
                ]
            }
        )
    )
    principal = store.authenticate(f"Bearer {good}")
    assert (principal.key_id, principal.tenant) == ("g", "t1")
    assert principal.scopes.allows_model("m1") and not principal.scopes.allows_model("m2")
    assert not principal.scopes.allows_agent("a")
    assert store.authenticate(f"bearer  {good} ").key_id == "g"
    for header, message in [
        (None, "missing"),
        ("", "missing"),
        (good, "malformed"),
        ("Bearer", "malformed"),
        ("Basic " + good, "malformed"),
        ("Bearer rt-nope", "invalid"),
        (f"Bearer {old}", "revoked"),
    ]:
        with pytest.raises(AuthenticationError, match=message) as err:
            store.authenticate(header)
        assert err.value.status == 401 and good not in err.value.message


def test_local_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    config = AuthConfig(local_key_env="RUNTIME_TEST_LOCAL_KEY")
    assert len(KeyStore(config)) == 0  # unset: no local key
    monkeypatch.setenv("RUNTIME_TEST_LOCAL_KEY", key)
    principal = KeyStore(config).authenticate(f"Bearer {key}")
    assert principal.tenant == "local" and principal.scopes == Scopes(admin=True)


def test_config_rejects_duplicates_and_plain_keys() -> None:
    digest = key_hash(new_key())
    with pytest.raises(ValueError, match="unique"):
        AuthConfig.model_validate(
            {
                "keys": [
                    {"id": "a", "tenant": "t", "sha256": digest},
                    {"id": "a", "tenant": "t", "sha256": "0" * 64},
                ]
            }
        )
    with pytest.raises(ValueError, match="twice"):
        AuthConfig.model_validate(
            {
                "keys": [
                    {"id": "a", "tenant": "t", "sha256": digest},
                    {"id": "b", "tenant": "t", "sha256": digest},
                ]
            }
        )
    with pytest.raises(ValueError, match="String should match pattern"):
        AuthConfig.model_validate({"keys": [{"id": "a", "tenant": "t", "sha256": "rt-plain"}]})
    with pytest.raises(ValueError, match="model names must be unique"):
        GatewayAppConfig.model_validate({"models": [{"name": "m"}, {"name": "m"}]})
