"""A replica whose engine dies is replaced by Serve, and the app serves again."""

from __future__ import annotations

import httpx
import psutil

from tests.support.agent_helpers import replica_and_engine
from tests.support.polling import wait_for
from tests.support.stack import Stack


def test_dead_engine_fails_health_check_and_replica_is_replaced(stack: Stack) -> None:
    body = {
        "model": stack.tiny_model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    }
    with httpx.Client(base_url=stack.tiny_url, timeout=30) as http:
        assert http.post("/chat/completions", json=body).status_code == 200
        replica, engine = replica_and_engine("tiny")
        engine.kill()

        failed = http.post("/chat/completions", json=body)
        assert failed.status_code >= 500
        assert "error" in failed.json()

        wait_for(
            lambda: http.post("/chat/completions", json=body).status_code == 200,
            180,
            interval_s=1,
            retry=httpx.HTTPError,
            message="the app did not serve again within 180 s",
        )
    new_replica, _ = replica_and_engine("tiny")
    assert new_replica.pid != replica.pid
    gone, _alive = psutil.wait_procs([replica], timeout=60)  # the old replica exits too
    assert gone, "the replica with the dead engine is still running after 60 s"
