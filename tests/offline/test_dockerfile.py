"""Dockerfile.gpu: hadolint finds nothing (what it would flag is explained inline), and
the image follows the rules: pinned base and Ray, a non-root user, no secrets, a
health check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO

DOCKERFILE = REPO / "Dockerfile.gpu"


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    out = subprocess.run(
        [str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout


def test_image_rules() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (REPO / "pyproject.toml").read_text()
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    (base,) = [line for line in lines if line.startswith("FROM ")]
    vllm = re.search(r'"vllm==([\d.]+)"', pyproject)
    ray = re.search(r'"ray\[serve\]==([\d.]+)"', pyproject)
    assert vllm and ray
    assert base == f"FROM vllm/vllm-openai:v{vllm.group(1)}"  # the gpu extra's vLLM
    assert f'"ray[serve]=={ray.group(1)}"' in text  # the project's Ray
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"USER root", "USER 0"}
    assert int(users[-1].split()[1]) >= 10000
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    # Ray's token auth on: the default `ray start --head` refuses to start tokenless.
    assert "RAY_AUTH_MODE=token" in text
    # No secret is set or copied in: no ENV/ARG named like one, no .env or key files.
    for line in lines:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET|DSN)\w*=", line), line
        if line.startswith(("COPY ", "ADD ")):
            assert not re.search(r"\.env|\.pem|\.key|secret", line, re.I), line
