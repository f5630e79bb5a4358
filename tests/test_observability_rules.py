"""Alert rules and the Grafana dashboard, offline: `promtool check rules`, `promtool
test rules` (each alert fires on the series that should fire it and stays quiet on
healthy ones), and the dashboard's shape. (tests/test_observability.py runs every
expression against a real Prometheus scraping the local stack.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

OBSERVABILITY = REPO / "observability"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # a failure, never a skip: `make test` installs it
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def dashboard_exprs() -> list[str]:
    board = json.loads((OBSERVABILITY / "grafana/agent-runtime.json").read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def test_rules_are_valid() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(OBSERVABILITY / "alerts.yaml")],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_alerts_fire_on_the_series_that_should_fire_them() -> None:
    out = subprocess.run([promtool(), "test", "rules", "alerts.test.yaml"], cwd=OBSERVABILITY,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    tested = yaml.safe_load((OBSERVABILITY / "alerts.test.yaml").read_text())["tests"]
    covered = {t["alertname"] for case in tested for t in case["alert_rule_test"]}
    assert covered == set(alerts)
    docs = (REPO / "docs/observability.md").read_text()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["runbook"] == "docs/observability.md#alerts"
        assert name in docs  # each alert is explained where its runbook points


def test_dashboard_shape() -> None:
    board: dict[str, Any] = json.loads((OBSERVABILITY / "grafana/agent-runtime.json").read_text())
    assert board["uid"] == "agent-runtime"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Gateway", "Agents", "LLM", "Providers"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    exprs = dashboard_exprs()
    assert len(exprs) >= 20 and all("ray_" in e for e in exprs)
    # Bounded labels only: no session, run or request ids are grouped by.
    assert not any(word in e for e in exprs + alert_exprs() for word in ("session", "run_id"))
