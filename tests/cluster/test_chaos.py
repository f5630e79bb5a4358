"""The chaos suite: constant mixed load through the gateway while replicas are killed.

Short form (in ``make test``): an agent replica, then the gateway's replica. Full form
(``make chaos``, ``RUNTIME_CHAOS_FULL=1``): longer windows, also the tiny model's and
SmolLM2's replicas (a worker runs `planner` turns on SmolLM2 meanwhile), every agent
replica at once, and the gateway again; the results go to benchmarks/results/chaos.*.
With the clients' default retries (the SDK's; the openai client's two) every agent turn
and session creation must succeed, and no turn may be lost or run twice."""

from __future__ import annotations

import os
import time

from tests.support.chaos import Load, inject, report, write
from tests.support.keys import API_KEY
from tests.support.paths import REPO
from tests.support.stack import TINY_MODEL, Stack

FULL = os.environ.get("RUNTIME_CHAOS_FULL") == "1"
#: (app, deployment, replicas it runs, how many to kill; None: all).
SHORT = [("agents", "AgentServer", 2, 1), ("gateway", "Gateway", 1, 1)]
EXTRA = [
    ("tiny", "LLMServer", 1, 1),
    ("llm", "LLMServer", 1, 1),
    ("agents", "AgentServer", 2, None),
    ("gateway", "Gateway", 1, 1),
]


def test_load_rides_out_replica_kills(stack: Stack) -> None:
    load = Load(stack.url, API_KEY, TINY_MODEL)
    threads = load.start(model_agent="planner" if FULL else None)
    began = time.monotonic()
    faults = []
    settle_s = 30 if FULL else 5
    try:
        time.sleep(30 if FULL else 8)  # the fault-free baseline
        for app, deployment, want, count in SHORT + (EXTRA if FULL else []):
            faults.append(inject(app, deployment, want, count))
            time.sleep(settle_s)
    finally:
        load.finish(threads)
    result = report(load, faults, began, time.monotonic())
    if FULL:
        write(result, REPO / "benchmarks/results")
    total = result["total"]
    assert result["integrity"] == {"lost": 0, "run_twice": 0}, result["integrity"]
    for kind in ("turn", "session", *(["model-turn"] if FULL else [])):
        assert total[kind]["success_rate"] == 1.0, (kind, total[kind])
    assert total["turn"]["succeeded"] >= 10, total["turn"]
    for fault in faults:
        assert fault.restored_s == fault.restored_s, f"{fault.name}: not replaced"  # not nan
    # Chat requests are recorded, not held to 100 %: the openai client retries twice
    # (about 1.5 s), less than a killed gateway or engine takes to come back.
    assert total["chat"]["requests"] > 0 and total["stream"]["requests"] > 0
