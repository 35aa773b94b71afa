"""Alertmanager's configuration as cloudml renders it, checked by the real `amtool` (Debian's
prometheus-alertmanager): `check-config` accepts it, `config routes test` sends each severity and
team where the routing promises, and `template render` shows the team in the SNS subject and message
and keeps the subject within SNS's 100 characters."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from components.platform.monitoring_alerting import (
    MESSAGE,
    SLACK_URL_FILE,
    SUBJECT,
    alertmanager_config,
    publish_policy,
)

TOPIC = "arn:aws:sns:us-west-2:111122223333:ml-dev-alerts"
TEAMS = ["vision", "nlp"]


def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed: `apt-get install -y prometheus-alertmanager` (.ci/run installs it)")
    return path


def run_amtool(*args: str) -> str:
    result = subprocess.run([amtool(), *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"amtool {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(params=[False, True], ids=["sns-only", "sns-and-slack"])
def config_file(request, tmp_path) -> Path:
    path = tmp_path / "alertmanager.yaml"
    path.write_text(alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=request.param), encoding="utf-8")
    return path


def test_amtool_accepts_the_rendered_config(config_file):
    """`amtool check-config` passes, with and without Slack."""
    out = run_amtool("check-config", str(config_file))
    assert "SUCCESS" in out


def receiver(config_file: Path, *labels: str) -> str:
    return run_amtool("config", "routes", "test", f"--config.file={config_file}", *labels).strip()


def test_routes_by_severity_and_team(config_file):
    """critical -> SNS (+ Slack when configured), warning -> SNS, info and the chart's Watchdog ->
    nowhere; for each team, for a team not listed and for platform alerts without a team."""
    slack = "slack_configs" in config_file.read_text(encoding="utf-8")
    critical = "critical" if slack else "sns"
    for team in [*TEAMS, "unlisted", None]:
        team_label = [f"team={team}"] if team else []
        assert receiver(config_file, "alertname=GpuTemperatureHigh", "severity=critical", *team_label) == critical, team
        assert receiver(config_file, "alertname=GpuMemoryNearlyFull", "severity=warning", *team_label) == "sns", team
        assert receiver(config_file, "alertname=GpuIdle", "severity=info", *team_label) == "null", team
    assert receiver(config_file, "alertname=Watchdog", "severity=none") == "null"


def test_config_structure():
    """Grouped by alertname and team; one child route per team; the SNS receiver signs with the
    region and no static keys; Slack's webhook is read from the mounted Secret's file."""
    config = yaml.safe_load(alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=True))
    assert config["route"]["group_by"] == ["alertname", "team"]
    team_routes = [r["matchers"] for r in config["route"]["routes"] if "routes" in r]
    assert team_routes == [['team = "nlp"'], ['team = "vision"']]
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"null", "sns", "critical"}
    (sns,) = receivers["sns"]["sns_configs"]
    assert sns["topic_arn"] == TOPIC and sns["sigv4"] == {"region": "us-west-2"}
    assert receivers["critical"]["sns_configs"] == [sns]
    (slack,) = receivers["critical"]["slack_configs"]
    assert slack["api_url_file"] == SLACK_URL_FILE and "api_url" not in slack
    assert "hooks.slack.com" not in alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=True)


def render(tmp_path: Path, template: str, labels: dict) -> str:
    data = {"receiver": "sns", "status": "firing", "groupLabels": {}, "commonLabels": labels,
            "commonAnnotations": {}, "externalURL": "http://alertmanager",
            "alerts": [{"status": "firing", "labels": labels, "annotations": {
                "summary": "GPU 0 is hot", "description": "90 C for 5m", "runbook_url": "https://runbooks/gpu-temp"}}]}
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "none.tmpl").write_text("", encoding="utf-8")
    return run_amtool("template", "render", f"--template.glob={tmp_path / 'none.tmpl'}",
                      f"--template.data={tmp_path / 'data.json'}", f"--template.text={template}")


def test_notifications_name_the_team(tmp_path):
    """The SNS subject and message say which team an alert is for ("platform" when it has none)."""
    subject = SUBJECT.replace("PLATFORM", "ml-dev")
    labels = {"alertname": "GpuTemperatureHigh", "severity": "critical", "team": "vision"}
    assert render(tmp_path, subject, labels) == "[FIRING] GpuTemperatureHigh (team vision) ml-dev"
    assert render(tmp_path, subject, {"alertname": "EksApiErrors", "severity": "critical"}) == \
        "[FIRING] EksApiErrors (team platform) ml-dev"
    message = render(tmp_path, MESSAGE, labels)
    assert message.splitlines()[:4] == ["[FIRING] GpuTemperatureHigh severity=critical team=vision", "GPU 0 is hot",
                                        "90 C for 5m", "Runbook: https://runbooks/gpu-temp"]


def test_subject_fits_sns(tmp_path):
    """A very long alert name still gives a subject SNS accepts (at most 100 characters)."""
    subject = render(tmp_path, SUBJECT.replace("PLATFORM", "ml-dev"), {"alertname": "A" * 150, "team": "vision"})
    assert len(subject) == 95 and subject.startswith("[FIRING] AAAA")


def test_publish_policy_is_one_action_on_one_topic():
    """sns:Publish on exactly the alert topic, nothing else."""
    assert json.loads(publish_policy(TOPIC)) == {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": TOPIC}]}
