"""The platform's PrometheusRules: rendered from the PlatformSpec, valid against the CRD schema,
accepted by the real `promtool check rules`, and every alert, recording rule and KEDA query
exercised by `promtool test rules` on synthetic series (cases in tests/promtool/). Also the user
PromQL the rules do not hold: every scale-to-zero activationQuery of the stacks and test fixtures
parses, and the fixture's query returns one value."""

from __future__ import annotations

import ast
import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, STACKS, sample_config
from k8s_schema import schema_errors
from promtool import promtool, rules_file, run_unit_tests
from promtool.alert_cases import all_cases
from promtool.expr_cases import activation_case, keda_cases, recording_cases
from test_workload_model_service import WAKE_QUERY

from components.monitoring.rules import (
    kube_state_metrics_allowlist,
    prometheus_duration,
    prometheus_rules,
    rule_groups,
    seconds,
)
from components.render import RenderError
from components.spec import load_platform

ALERTS = {
    "GpuXidError", "GpuTemperatureHigh", "GpuMemoryNearlyFull", "GpuAllocatedButIdle", "DcgmExporterDown",
    "DcgmExporterAbsentOnGpuNode", "GpuNodeNotReady", "GpuPodsPendingNoCapacity", "NodePoolAtMaxSize",
    "TeamNearGpuQuota", "TrainingJobFailed", "TrainingJobStalled", "ModelServiceErrorRate",
    "ModelServiceLatencyHigh", "DevEnvironmentIdlePastTimeout",
}
RECORDS = {
    "cloudml:pod_workload:info", "cloudml:pod_gpu_requests:sum", "cloudml:gpu_node:info",
    "cloudml:gpu_utilization:avg_by_team", "cloudml:gpu_utilization:avg_by_workload",
    "cloudml:gpu_allocated:sum_by_team", "cloudml:gpu_allocated:sum_by_workload",
}
TEAM_ALERTS = ALERTS - {"DcgmExporterDown", "DcgmExporterAbsentOnGpuNode", "GpuNodeNotReady", "NodePoolAtMaxSize"}


@pytest.fixture(scope="module")
def platform():
    return load_platform(sample_config("platform-dev")["cloudml:platform"])


@pytest.fixture(scope="module")
def rules(platform):
    return prometheus_rules(platform)


def all_rules(rules):
    return [rule for group in rule_groups(rules) for rule in group["rules"]]


def test_rule_objects_are_schema_valid_and_selected_by_prometheus(rules):
    assert [r["metadata"]["name"] for r in rules] == ["cloudml-recording-rules", "cloudml-alert-rules"]
    for rule in rules:
        assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
        assert rule["metadata"]["namespace"] == "monitoring"
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert schema_errors(rule) == []


def test_rule_names(rules):
    names = [r.get("alert") or r.get("record") for r in all_rules(rules)]
    assert set(names) == ALERTS | RECORDS
    # One NodePoolAtMaxSize per GPU pool of platform-dev (a10g max 4, l4-spot max 8).
    pool_rules = [r for r in all_rules(rules) if r.get("alert") == "NodePoolAtMaxSize"]
    assert [(r["labels"]["pool"], r["expr"]) for r in pool_rules] == [
        ("a10g", 'count(kube_node_labels{label_cloudml_io_pool="a10g"}) >= 4'),
        ("l4-spot", 'count(kube_node_labels{label_cloudml_io_pool="l4-spot"}) >= 8'),
    ]


def test_every_alert_has_severity_and_annotations(rules):
    for rule in all_rules(rules):
        if "alert" not in rule:
            continue
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        assert all(len(text) > 20 for text in rule["annotations"].values()), rule["alert"]
        # Alerts about team pods carry `team`, derived from the namespace team-<name>.
        derives_team = 'team-(.+)' in rule["expr"] or "group_left (team" in rule["expr"]
        assert derives_team == (rule["alert"] in TEAM_ALERTS), rule["alert"]


def test_promtool_check_rules_accepts_the_rendered_file(rules, tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(rules)}, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(all_rules(rules))} rules found" in result.stdout


def test_promtool_check_rules_rejects_a_broken_expression(rules, tmp_path):
    """The check above would catch a broken rule: the same file with one expression mangled fails."""
    groups = copy.deepcopy(rule_groups(rules))
    groups[1]["rules"][0] = {**groups[1]["rules"][0], "expr": "DCGM_FI_DEV_XID_ERRORS > > 0"}
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "GpuXidError" in result.stdout + result.stderr or "parse error" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    fires, silent = set(), set()
    for case in all_cases():
        for test in case["alert_rule_test"]:
            (fires if test["exp_alerts"] else silent).add(test["alertname"])
    assert fires == ALERTS
    assert silent == ALERTS


def _unit_tests(rules, tmp_path, tests) -> subprocess.CompletedProcess:
    """`promtool test rules` of these cases over the rendered rules."""
    return run_unit_tests(rules_file(rules, tmp_path / "rules.yaml"), tests, tmp_path)


def _passed(result: subprocess.CompletedProcess) -> bool:
    return result.returncode == 0 and "SUCCESS" in result.stdout


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c['alert_rule_test'][0]['alertname']}: {c['name']}")
def test_alert_unit_case(rules, tmp_path, case):
    """The alert fires with the expected labels and annotations on its bad series, or stays silent."""
    result = _unit_tests(rules, tmp_path, [case])
    assert _passed(result), result.stdout + result.stderr


@pytest.mark.parametrize("case", recording_cases() + keda_cases(), ids=lambda c: c["name"])
def test_expression_unit_case(rules, tmp_path, case):
    """The recording rule or KEDA query evaluates to exactly the expected samples."""
    result = _unit_tests(rules, tmp_path, [case])
    assert _passed(result), result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_unit_test(rules, tmp_path):
    """promtool does fail a case whose expectation is wrong (the suite above is not vacuous)."""
    case = recording_cases()[1]
    case["promql_expr_test"][0]["exp_samples"][1]["value"] = 71
    result = _unit_tests(rules, tmp_path, [case])
    assert result.returncode == 1
    assert "FAILED" in result.stdout + result.stderr


def _expr(rules, alert):
    return next(r for r in all_rules(rules) if r.get("alert") == alert)


def _xid_case(name: str) -> dict:
    return next(c for c in all_cases() if c["name"] == name)


def test_xid_series_switch_needs_the_uuid_key(rules, tmp_path):
    """The XID cases tell the rule's UUID key from a per-series one: with dcgm-exporter's err_code
    label a new code is a new series, which a per-series changes() never sees change (and the GPU
    is not new), so that rule misses the XID 79 the real one reports."""
    case = _xid_case("XID 79 on a GPU: the err_code 0 series ends, the err_code 79 series begins")
    assert _unit_tests(rules, tmp_path, [case]).returncode == 0
    mutated = copy.deepcopy(rules)
    for rule in all_rules(mutated):
        if rule.get("alert") == "GpuXidError":
            rule["expr"] = ('label_replace(DCGM_FI_DEV_XID_ERRORS > 0 and changes(DCGM_FI_DEV_XID_ERRORS[10m]) > 0, '
                            '"team", "$1", "namespace", "team-(.+)")')
    result = _unit_tests(mutated, tmp_path, [case])
    assert result.returncode == 1 and "GpuXidError" in result.stdout + result.stderr


def test_gpu_memory_nearly_full_notifies(rules):
    """GpuMemoryNearlyFull predicts an out-of-memory failure: severity warning (routed to SNS), not
    info (routed nowhere)."""
    assert _expr(rules, "GpuMemoryNearlyFull")["labels"] == {"severity": "warning"}


# --- scale-to-zero activation queries: user PromQL --------------------------------------------------

_ACTIVATION_LITERAL = re.compile(r"""["']activationQuery["']\s*:\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")


def _activation_queries_in(value, found: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "activationQuery" and isinstance(item, str):
                found.append(item)
            else:
                _activation_queries_in(item, found)
    elif isinstance(value, list):
        for item in value:
            _activation_queries_in(item, found)


def activation_queries() -> dict[str, str]:
    """where -> query: every `activationQuery` of the stacks (stacks/*.yaml, the test stacks under
    tests/), every string literal given as "activationQuery" in the test modules, and WAKE_QUERY."""
    found: dict[str, str] = {"tests/test_workload_model_service.py WAKE_QUERY": WAKE_QUERY}
    for path in sorted([*STACKS.glob("*.yaml"), *(REPO / "tests").rglob("*.yaml")]):
        if "golden" in path.parts:
            continue  # rendered output, not stack config
        queries: list[str] = []
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            _activation_queries_in(doc, queries)
        found.update({f"{path.relative_to(REPO)} #{i}": q for i, q in enumerate(queries)})
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for i, match in enumerate(_ACTIVATION_LITERAL.finditer(path.read_text(encoding="utf-8"))):
            found[f"{path.relative_to(REPO)} literal #{i}"] = ast.literal_eval(match.group(1))
    return found


def _check_queries(queries: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    rules = [{"record": f"cloudml:activation_check_{i}", "expr": q} for i, q in enumerate(queries.values())]
    path = tmp_path / "activation.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "activation", "rules": rules}]}), encoding="utf-8")
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_promtool_parses_every_activation_query(tmp_path):
    """KEDA sends activationQuery to Prometheus as written: each one found parses (promtool check
    rules, one recording rule per query); a broken query would fail the same check."""
    queries = activation_queries()
    assert WAKE_QUERY in queries.values() and "sum(x)" in queries.values(), queries  # the fixtures are found
    result = _check_queries(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout
    broken = _check_queries({**queries, "broken": "sum(rate(gateway_requests_total[2m])"}, tmp_path)
    assert broken.returncode == 1


def test_activation_query_returns_one_value(rules, tmp_path):
    """WAKE_QUERY over a gateway's request counters returns a single sample (KEDA needs one value):
    3 requests a second to the service's route, the other route left out."""
    result = _unit_tests(rules, tmp_path, [activation_case(WAKE_QUERY, "resnet")])
    assert _passed(result), result.stdout + result.stderr


def test_thresholds_come_from_the_monitoring_config(platform):
    monitoring = platform.monitoring.model_copy(update={
        "gpu_temperature_celsius": 80, "gpu_idle_utilization_percent": 10, "gpu_idle_window": 3600})
    rules = prometheus_rules(platform.model_copy(update={"monitoring": monitoring, "gpu_pools": []}))
    assert "DCGM_FI_DEV_GPU_TEMP >= 80," in _expr(rules, "GpuTemperatureHigh")["expr"]
    idle = _expr(rules, "GpuAllocatedButIdle")
    assert 'DCGM_FI_DEV_GPU_UTIL{namespace=~"team-.+"} < 10\n' in idle["expr"]
    assert 'DCGM_FI_DEV_GPU_UTIL{namespace=~"team-.+"} >= 10)[7d:5m]' in _expr(rules, "DevEnvironmentIdlePastTimeout")["expr"]
    assert idle["for"] == "1h"
    assert "NodePoolAtMaxSize" not in {r.get("alert") for r in all_rules(rules)}


def test_fixed_thresholds_and_the_dev_environment_margin(rules):
    """Thresholds not in the config are the module's constants; a dev environment alerts 1h past
    its own timeout, read from its pod's cloudml.io/idle-timeout label (no fixed `for`)."""
    assert "> 0.05" in _expr(rules, "ModelServiceErrorRate")["expr"]
    assert ") / 1e6 > 1" in _expr(rules, "ModelServiceLatencyHigh")["expr"]
    assert "> 0.9," in _expr(rules, "TeamNearGpuQuota")["expr"]
    dev = _expr(rules, "DevEnvironmentIdlePastTimeout")
    assert "for" not in dev
    assert '"le", "$1", "label_cloudml_io_idle_timeout", "(.+)")' in dev["expr"] and ") + 3600" in dev["expr"]
    idle = _expr(rules, "GpuAllocatedButIdle")["expr"]
    assert 'unless on (namespace, pod) cloudml:pod_workload:info{component="devEnvironment"}' in idle


@pytest.mark.parametrize(("value", "text"), [(7200, "2h"), ("2h", "2h"), (5400, "90m"), (86400, "1d"), (90, "90s"), ("15m", "15m")])
def test_prometheus_duration(value, text):
    assert prometheus_duration(value) == text


@pytest.mark.parametrize("value", ["2 hours", "10ms", True, 0, "-5m"])
def test_bad_durations_are_refused(value):
    with pytest.raises(RenderError):
        prometheus_duration(value) if value != 0 else prometheus_duration(seconds(value))


def test_kube_state_metrics_allowlist():
    assert kube_state_metrics_allowlist() == [
        "pods=[app.kubernetes.io/component,cloudml.io/team,cloudml.io/workload,cloudml.io/idle-timeout]",
        "nodes=[cloudml.io/pool,cloudml.io/gpu-type]",
    ]
