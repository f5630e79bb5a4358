"""The observability artefacts (observability/): alert and recording rule files, the
Grafana dashboards and the PromQL expressions in them. Checked offline by
tests/offline/test_observability_rules.py, run against a real Prometheus scraping the
test stack by tests/cluster/test_observability.py."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tests.support.paths import REPO

OBSERVABILITY = REPO / "observability"

#: One dashboard per concern, by file name: its uid and its rows.
DASHBOARDS = {
    "overview": ("agent-runtime-overview", ["At a glance", "Gateway", "Providers"]),
    "agents": ("agent-runtime-agents", ["Turns", "Stages and load"]),
    "llm": ("agent-runtime-llm", ["Latency", "Capacity", "GPU time"]),
    "cost": ("agent-runtime-cost", ["Cost (USD per hour)", "Usage"]),
}
RULE_FILES = [OBSERVABILITY / "alerts.yaml", OBSERVABILITY / "recording.yaml"]


def dashboard(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((OBSERVABILITY / f"grafana/{name}.json").read_text())
    return board


def dashboard_exprs() -> list[str]:
    return [
        t["expr"]
        for name in DASHBOARDS
        for p in dashboard(name)["panels"]
        for t in p.get("targets", [])
    ]


def alert_exprs() -> list[str]:
    return [
        r["expr"]
        for path in RULE_FILES
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
    ]
