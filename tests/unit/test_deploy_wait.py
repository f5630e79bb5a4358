"""Waiting for Serve's HTTP routes after a deploy (runtime/deploy.py)."""

import pytest

from runtime.deploy import DeployError, wait_for_routes
from tests.support.net import free_port


def test_handles_only_apps_need_no_proxy() -> None:
    # Nothing listens on the port: a config whose applications have no route_prefix
    # (handles only) used to wait the whole minute, then fail.
    wait_for_routes(f"http://127.0.0.1:{free_port()}", [], timeout_s=1)


def test_a_route_that_never_comes_fails_with_the_prefixes() -> None:
    with pytest.raises(DeployError, match=r"does not route \['/x'\] after 1 s"):
        wait_for_routes(f"http://127.0.0.1:{free_port()}", ["/x"], timeout_s=1)
