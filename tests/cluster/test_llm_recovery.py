"""A replica whose engine dies ends itself at once, Serve replaces it, and the app
serves again."""

from __future__ import annotations

import time

import httpx
import psutil

from tests.support.agent_helpers import replica_and_engine
from tests.support.polling import wait_for
from tests.support.stack import Stack


def test_dead_engine_ends_its_replica_which_is_replaced(stack: Stack) -> None:
    body = {
        "model": stack.tiny_model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    }
    with httpx.Client(base_url=stack.tiny_url, timeout=30) as http:
        assert http.post("/chat/completions", json=body).status_code == 200
        replica, engine = replica_and_engine("tiny")
        killed = time.monotonic()
        engine.kill()

        # As vLLM's own server does, the replica ends when its engine dies: Serve's
        # health check alone kept it (answering errors) for three periods, about 30 s.
        gone, _alive = psutil.wait_procs([replica], timeout=10)
        assert gone, "the replica with the dead engine is still running after 10 s"
        ended_s = time.monotonic() - killed

        wait_for(
            lambda: http.post("/chat/completions", json=body).status_code == 200,
            240,
            interval_s=1,
            retry=httpx.HTTPError,
            message="the app did not serve again within 240 s",
        )
    new_replica, _ = replica_and_engine("tiny")
    assert new_replica.pid != replica.pid, f"ended after {ended_s:.1f} s, not replaced"
