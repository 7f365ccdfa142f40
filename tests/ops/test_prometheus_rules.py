"""The alert rules (deploy/kubernetes/base/prometheus-rule.yaml, the one source): the
PrometheusRule's spec passes `promtool check rules`, and `promtool test rules`
(deploy/prometheus/tests) fires each alert on a broken system and on nothing healthy;
each alert has a severity, a summary, a description and a runbook section in
docs/operations.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from ops_binaries import binary

ROOT = Path(__file__).resolve().parents[2]
RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheus-rule.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "tests"
OPERATIONS = ROOT / "docs" / "operations.md"
# the file name the unit tests' rule_files give
RULES_FILE = "skiplock-rules.yml"


def rule_resource() -> dict[str, Any]:
    resource: dict[str, Any] = yaml.safe_load(RULE.read_text())
    return resource


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_resource()["spec"]["groups"] for r in g["rules"] if "alert" in r]


def extracted(directory: Path) -> Path:
    """The PrometheusRule's spec as a plain rule file, with the unit tests beside it."""
    for test in RULE_TESTS.glob("*.yml"):
        shutil.copy(test, directory / test.name)
    rules = directory / RULES_FILE
    rules.write_text(yaml.safe_dump(rule_resource()["spec"]))
    return rules


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, check=False)


def test_the_resource_is_a_prometheus_rule() -> None:
    resource = rule_resource()
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"]["name"] == "skiplock"


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    checked = run(binary("promtool"), "check", "rules", extracted(tmp_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_unit_tests_fire_each_alert_and_only_where_broken(tmp_path: Path) -> None:
    extracted(tmp_path)
    tests = sorted(p.name for p in tmp_path.glob("*.yml") if p.name != RULES_FILE)
    assert tests
    result = subprocess.run(
        [binary("promtool"), "test", "rules", *tests],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_fired_by_a_unit_test() -> None:
    fired = set()
    for path in RULE_TESTS.glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    fired.add(case["alertname"])
    assert fired == {a["alert"] for a in alerts()}


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    headings = {
        anchor(line.lstrip("#").strip())
        for line in OPERATIONS.read_text().splitlines()
        if line.startswith("#")
    }
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        annotations = alert["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in headings, f"docs/operations.md has no section {name}"


def anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")
