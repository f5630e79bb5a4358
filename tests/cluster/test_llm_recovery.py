"""A replica whose engine dies is replaced by Serve, and the app serves again."""

from __future__ import annotations

import httpx
import psutil

from tests.support.polling import wait_for
from tests.support.stack import Stack


def _replica_and_engine(app: str) -> tuple[psutil.Process, psutil.Process]:
    for proc in psutil.process_iter(["cmdline"]):
        if f"ServeReplica:{app}:LLMServer" in " ".join(proc.info["cmdline"] or []):
            engines = [c for c in proc.children() if "EngineCore" in " ".join(c.cmdline())]
            if engines:
                return proc, engines[0]
    raise AssertionError(f"no replica with an engine process for app {app!r}")


def test_dead_engine_fails_health_check_and_replica_is_replaced(stack: Stack) -> None:
    body = {
        "model": stack.tiny_model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    }
    with httpx.Client(base_url=stack.tiny_url, timeout=30) as http:
        assert http.post("/chat/completions", json=body).status_code == 200
        replica, engine = _replica_and_engine("tiny")
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
    new_replica, _ = _replica_and_engine("tiny")
    assert new_replica.pid != replica.pid
    gone, _alive = psutil.wait_procs([replica], timeout=60)  # the old replica exits too
    assert gone, "the replica with the dead engine is still running after 60 s"
