"""Local clusters' settings (runtime/local_ray.py): token auth on unless explicitly
allowed off; `runtime run` refuses a shell that turned it off. No cluster starts here."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from runtime import local_ray
from tests.support.paths import REPO


def test_auth_is_token_unless_disabled_is_explicitly_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert local_ray.auth_env() == {"RAY_AUTH_MODE": "token"}
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    with pytest.raises(local_ray.InsecureClusterError, match="--insecure-no-ray-auth"):
        local_ray.auth_env()
    assert local_ray.auth_env(allow_insecure=True) == {"RAY_AUTH_MODE": "disabled"}
    monkeypatch.setenv("RAY_AUTH_MODE", "k8s")
    with pytest.raises(local_ray.InsecureClusterError):
        local_ray.auth_env()


def test_run_refuses_a_shell_that_turned_ray_auth_off() -> None:
    """Before: `RAY_AUTH_MODE=disabled make run` started a cluster whose ports run code
    for anyone on the network."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "run", "serve_configs/local.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "RAY_AUTH_MODE=disabled" in done.stderr and "--insecure-no-ray-auth" in done.stderr
