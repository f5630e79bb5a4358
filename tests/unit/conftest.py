"""The unit tier: no Ray. Importing Ray's modules is fine; starting Ray (``ray.init``,
directly or through an API that connects on first use) fails the test: it belongs in
tests/cluster."""

from __future__ import annotations

from typing import Any, NoReturn

import pytest
import ray
import ray._private.worker


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    pytest.fail(
        "tests/unit runs without Ray, and this test started it (ray.init): "
        "a test that needs Ray belongs in tests/cluster"
    )


@pytest.fixture(autouse=True)
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "init", _refuse)
    monkeypatch.setattr(ray._private.worker, "init", _refuse)
