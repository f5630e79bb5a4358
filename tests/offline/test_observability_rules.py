"""Alert rules and the Grafana dashboard, offline: `promtool check rules`, `promtool
test rules` (each alert fires on the series that should fire it and stays quiet on
healthy ones), and the dashboard's shape. (tests/cluster/test_observability.py runs every
expression against a real Prometheus scraping the local stack.)"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.support.observability import (
    DASHBOARDS,
    OBSERVABILITY,
    RULE_FILES,
    alert_exprs,
    dashboard,
    dashboard_exprs,
)
from tests.support.paths import REPO


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # a failure, never a skip: `make test` installs it
        pytest.fail("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_rules_are_valid() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("tests", ["alerts.test.yaml", "recording.test.yaml"])
def test_rules_do_what_their_tests_say(tests: str) -> None:
    """Each alert fires on the series that should fire it; the cost rule shares GPU cost
    by tokens and keeps per-token cost as counted."""
    out = subprocess.run(
        [promtool(), "test", "rules", tests],
        cwd=OBSERVABILITY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_every_alert_is_tested_and_has_a_runbook() -> None:
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yaml").read_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    tested = yaml.safe_load((OBSERVABILITY / "alerts.test.yaml").read_text())["tests"]
    recorded = yaml.safe_load((OBSERVABILITY / "recording.test.yaml").read_text())["tests"]
    rules = yaml.safe_load((OBSERVABILITY / "recording.yaml").read_text())["groups"]
    for rule in (r["record"] for g in rules for r in g["rules"]):  # every recorded series
        assert any(rule in t["expr"] for case in recorded for t in case["promql_expr_test"])
    covered = {t["alertname"] for case in tested for t in case["alert_rule_test"]}
    assert covered == set(alerts)
    docs = (REPO / "docs/observability.md").read_text()
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"page", "ticket"}
        assert rule["annotations"]["runbook"] == "docs/observability.md#alerts"
        assert name in docs  # each alert is explained where its runbook points


@pytest.mark.parametrize("name", DASHBOARDS)
def test_dashboard_shape(name: str) -> None:
    board = dashboard(name)
    uid, rows = DASHBOARDS[name]
    assert board["uid"] == uid
    assert [p["title"] for p in board["panels"] if p["type"] == "row"] == rows
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel
            # The runtime's series (Ray prefixes `ray_`) or its recording rules.
            assert all("ray_" in t["expr"] or "runtime:" in t["expr"] for t in panel["targets"]), (
                panel
            )


def test_dashboards_cover_every_concern() -> None:
    exprs = " ".join(dashboard_exprs())
    for series in (
        "ray_runtime_gateway_requests_total",
        "ray_runtime_agent_stage_seconds",
        "ray_vllm_time_to_first_token_seconds",
        "ray_runtime_llm_gpu_memory",
        "runtime:cost_usd:rate5m",
        "ray_runtime_usage_tokens_total",
        "ray_runtime_provider_circuit_state",
    ):
        assert series in exprs, series
    # Bounded labels only: no session, run or request ids are grouped by.
    assert not any(
        word in e for e in dashboard_exprs() + alert_exprs() for word in ("session", "run_id")
    )
