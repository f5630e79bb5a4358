"""Cluster autoscaling: pending replicas make Ray's autoscaler (v2, fake multi-node
provider) add a worker of the right group, and idle workers go
(tests/support/cluster_autoscaler.py, in its own process: it runs a second Ray cluster
beside the session's)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.paths import REPO


def test_autoscaler_adds_workers_by_group_and_removes_idle_ones() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.cluster_autoscaler", "--idle-timeout-s", "6"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout[-2000:] + done.stderr[-4000:]
    seen = json.loads(lines[-1])
    assert "error" not in seen, seen
    assert seen["workers_before"] == {}  # the head alone, with no CPUs
    # One replica of each kind and nowhere to run it: one worker of each group ...
    assert seen["workers_serving"] == {"cpu": 1, "gpu": 1}
    # ... and each replica on a worker of its kind.
    assert seen["placed"] == {"agents": [True], "llm": [True]}
    # The applications deleted: the idle workers go after the idle timeout (6 s).
    assert seen["workers_removed_after_s"] >= 5.5  # (polled every 0.5 s)
    assert done.returncode == 0
