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
HEARTBEAT = "arn:aws:sns:us-west-2:111122223333:ml-dev-heartbeat"
TEAMS = ["vision", "nlp"]
VISION_TOPIC = "arn:aws:sns:us-west-2:111122223333:ml-dev-alerts-vision"
TEAM_TOPICS = {"vision": VISION_TOPIC}  # nlp has no alertEmails of its own


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
    path.write_text(alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=request.param, heartbeat_topic_arn=HEARTBEAT,
                                       team_topics=TEAM_TOPICS), encoding="utf-8")
    return path


def test_amtool_accepts_the_rendered_config(config_file):
    """`amtool check-config` passes, with and without Slack."""
    out = run_amtool("check-config", str(config_file))
    assert "SUCCESS" in out


def receiver(config_file: Path, *labels: str) -> str:
    return run_amtool("config", "routes", "test", f"--config.file={config_file}", *labels).strip()


def test_routes_by_severity_and_team(config_file):
    """critical -> SNS (+ Slack when configured), warning -> SNS, info and the chart's InfoInhibitor ->
    nowhere; for each team, for a team not listed and for platform alerts without a team; a team
    with its own topic (vision) gets its critical and warning alerts there too, before the platform's
    receiver; the chart's Watchdog -> the heartbeat topic."""
    slack = "slack_configs" in config_file.read_text(encoding="utf-8")
    critical = "critical" if slack else "sns"
    for team in [*TEAMS, "unlisted", None]:
        team_label = [f"team={team}"] if team else []
        own = ["team-vision"] if team == "vision" else []
        assert receiver(config_file, "alertname=GpuTemperatureHigh", "severity=critical", *team_label) == \
            ",".join([*own, critical]), team
        assert receiver(config_file, "alertname=GpuMemoryNearlyFull", "severity=warning", *team_label) == \
            ",".join([*own, "sns"]), team
        assert receiver(config_file, "alertname=GpuIdle", "severity=info", *team_label) == "null", team
    assert receiver(config_file, "alertname=Watchdog", "severity=none") == "heartbeat"
    assert receiver(config_file, "alertname=InfoInhibitor", "severity=none") == "null"


def test_config_structure():
    """Grouped by alertname and team; one child route per team; the SNS receiver signs with the
    region and no static keys; Slack's webhook is read from the mounted Secret's file."""
    config = yaml.safe_load(alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=True, heartbeat_topic_arn=HEARTBEAT,
                                                team_topics=TEAM_TOPICS))
    assert config["route"]["group_by"] == ["alertname", "team"]
    team_routes = [r["matchers"] for r in config["route"]["routes"] if "routes" in r]
    assert team_routes == [['team = "nlp"'], ['team = "vision"']]
    # vision's own route comes right before its platform route and continues to it.
    (own,) = [r for r in config["route"]["routes"] if r.get("receiver") == "team-vision"]
    assert own == {"receiver": "team-vision", "matchers": ['team = "vision"', 'severity =~ "critical|warning"'],
                   "continue": True}
    routes = config["route"]["routes"]
    assert routes[routes.index(own) + 1]["matchers"] == ['team = "vision"']
    receivers = {r["name"]: r for r in config["receivers"]}
    assert set(receivers) == {"null", "sns", "critical", "heartbeat", "team-vision"}
    (team_sns,) = receivers["team-vision"]["sns_configs"]
    assert team_sns["topic_arn"] == VISION_TOPIC and team_sns["sigv4"] == {"region": "us-west-2"}
    assert "slack_configs" not in receivers["team-vision"]
    (watchdog,) = [r for r in config["route"]["routes"] if r["matchers"] == ['alertname = "Watchdog"']]
    assert (watchdog["receiver"], watchdog["repeat_interval"], watchdog["group_interval"]) == ("heartbeat", "5m", "1m")
    (beat,) = receivers["heartbeat"]["sns_configs"]
    assert beat["topic_arn"] == HEARTBEAT and beat["sigv4"] == {"region": "us-west-2"}
    # Inhibition (amtool cannot test it): a critical hides only the warning of the same name about
    # the same team, namespace, node, target and pod.
    assert config["inhibit_rules"] == [{"source_matchers": ['severity = "critical"'],
                                        "target_matchers": ['severity = "warning"'],
                                        "equal": ["alertname", "team", "namespace", "node", "instance", "pod"]}]
    (sns,) = receivers["sns"]["sns_configs"]
    assert sns["topic_arn"] == TOPIC and sns["sigv4"] == {"region": "us-west-2"}
    assert receivers["critical"]["sns_configs"] == [sns]
    (slack,) = receivers["critical"]["slack_configs"]
    assert slack["api_url_file"] == SLACK_URL_FILE and "api_url" not in slack
    assert "hooks.slack.com" not in alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=True, heartbeat_topic_arn=HEARTBEAT)


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


def test_publish_policy_is_one_action_on_two_topics():
    """sns:Publish on exactly the alert and heartbeat topics, nothing else."""
    assert json.loads(publish_policy(TOPIC, HEARTBEAT)) == {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": [TOPIC, HEARTBEAT]}]}


def test_publish_policy_adds_the_team_topics():
    """The teams' own topics join the Resource list, still sns:Publish only."""
    assert json.loads(publish_policy(TOPIC, HEARTBEAT, [VISION_TOPIC])) == {"Version": "2012-10-17", "Statement": [
        {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": [TOPIC, HEARTBEAT, VISION_TOPIC]}]}


def test_team_topics_need_a_team_route():
    """A topic for a team the routes do not list would never get an alert: refused."""
    with pytest.raises(ValueError, match=r"\['ml'\]"):
        alertmanager_config("ml-dev", "us-west-2", TOPIC, TEAMS, slack=False, heartbeat_topic_arn=HEARTBEAT,
                            team_topics={"ml": VISION_TOPIC})


# --- scripts/install-prometheus-tools, with fake apt-get, systemctl and id ----------------------

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install-prometheus-tools"


def _fake(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)


def _install_env(tmp_path: Path, *, tools_present: bool, systemd: bool) -> tuple[dict, Path]:
    """A PATH of fakes (and the few real utilities the script uses), never the real promtool/amtool."""
    fake, real, log = tmp_path / "fake", tmp_path / "real", tmp_path / "log"
    fake.mkdir()
    real.mkdir()
    for tool in ("env", "tee", "chmod", "rm", "cat", "tail"):
        (real / tool).symlink_to(shutil.which(tool))
    policy = tmp_path / "policy-rc.d"
    _fake(fake, "id", "echo 0")
    _fake(fake, "systemctl", f'echo "systemctl $*" >> {log}')
    # apt-get records its arguments and whether the no-daemon policy was in place, then "installs".
    _fake(fake, "apt-get", f'echo "apt-get $* policy=$(cat {policy} 2>/dev/null | tail -n 1)" >> {log}\n'
                           f'printf "#!/bin/sh\\n" > {fake}/promtool; printf "#!/bin/sh\\n" > {fake}/amtool\n'
                           f'chmod 0755 {fake}/promtool {fake}/amtool')
    if tools_present:
        _fake(fake, "promtool", "")
        _fake(fake, "amtool", "")
    systemd_dir = tmp_path / "systemd"
    if systemd:
        systemd_dir.mkdir()
    env = {"PATH": f"{fake}:{real}", "CLOUDML_POLICY_RC_D": str(policy), "CLOUDML_SYSTEMD_DIR": str(systemd_dir)}
    return env, log


def _run_script(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_install_script_is_a_no_op_when_both_tools_exist(tmp_path):
    env, log = _install_env(tmp_path, tools_present=True, systemd=True)
    result = _run_script(env)
    assert result.returncode == 0, result.stderr
    assert not log.exists()


@pytest.mark.parametrize("systemd", [True, False], ids=["systemd", "no-systemd"])
def test_install_script_starts_no_daemon_and_cleans_up(tmp_path, systemd):
    """apt-get runs with the `exit 101` policy in place; the policy is gone afterwards; with systemd
    running the two units are disabled and stopped, without it systemctl is not called."""
    env, log = _install_env(tmp_path, tools_present=False, systemd=systemd)
    result = _run_script(env)
    assert result.returncode == 0, result.stderr
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "apt-get install -y --no-install-recommends prometheus prometheus-alertmanager policy=exit 101"
    assert lines[1:] == (["systemctl disable --now prometheus prometheus-alertmanager"] if systemd else [])
    assert not Path(env["CLOUDML_POLICY_RC_D"]).exists()


def test_install_script_removes_its_policy_when_the_install_fails(tmp_path):
    env, log = _install_env(tmp_path, tools_present=False, systemd=True)
    _fake(tmp_path / "fake", "apt-get", f'echo "apt-get $*" >> {log}; exit 100')
    result = _run_script(env)
    assert result.returncode == 100
    assert "failed (exit 100)" in result.stderr
    assert not Path(env["CLOUDML_POLICY_RC_D"]).exists()
    assert "systemctl" not in log.read_text(encoding="utf-8")
