"""The chaos suite: constant mixed load through the gateway while replicas are killed.

Short form (in ``make test``): an agent replica, then the gateway's replica. Full form
(``make chaos``, ``RUNTIME_CHAOS_FULL=1``): longer windows, also the tiny model's and
SmolLM2's replicas (a worker runs `planner` turns on SmolLM2 meanwhile), every agent
replica at once, and the gateway again; the results go to benchmarks/results/chaos.*.
With the clients' default retries (the SDK's; the openai client's two) no turn may be
lost or run twice, and every agent turn and session creation must succeed (the short
form: 99 % of turns)."""

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
    # The full run's figures are recorded with every turn answered; the short form's
    # 150-200 turns allow one failure (one CI run saw 1 of 182, its error unknown then:
    # the message now names the errors).
    least = 1.0 if FULL else 0.99
    for kind in ("turn", "session", *(["model-turn"] if FULL else [])):
        m = total[kind]
        assert m["success_rate"] >= least, (kind, m["success_rate"], m["errors"])
    assert total["turn"]["succeeded"] >= 10, total["turn"]
    for fault in faults:
        assert fault.restored_s == fault.restored_s, f"{fault.name}: not replaced"  # not nan
    # Chat requests are recorded, not held to 100 %: the openai client retries twice
    # (about 1.5 s), less than a killed gateway or engine takes to come back.
    assert total["chat"]["requests"] > 0 and total["stream"]["requests"] > 0
