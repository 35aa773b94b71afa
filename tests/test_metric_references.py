"""Every metric a PromQL expression of ours references (alert and recording rules, dashboard
queries, the KEDA triggers of model services) exists: it is a counter dcgm-exporter exports by
default (../shared/data/dcgm-exporter-default-counters.csv), a series our recording rules produce,
or a metric of a named standard exporter declared below. A typo'd metric name would otherwise make
an alert silently never fire."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from conftest import sample_config

from components.monitoring import dashboard_config_maps, prometheus_rules
from components.monitoring.dashboards import dashboard_queries
from components.monitoring.rules import rule_groups
from components.spec import load_platform
from components.workloads.model_service import gpu_utilization_query, request_rate_query

DCGM_COUNTERS = Path(__file__).resolve().parents[2] / "shared" / "data" / "dcgm-exporter-default-counters.csv"

# Metrics of standard exporters, by exporter (names from each project's docs or source).
STANDARD_METRICS = {
    "kube-state-metrics": {
        "kube_pod_labels", "kube_pod_start_time", "kube_pod_owner", "kube_pod_status_phase", "kube_pod_status_unschedulable",
        "kube_pod_container_resource_requests", "kube_node_labels", "kube_node_status_condition",
        "kube_node_status_allocatable", "kube_resourcequota", "kube_job_failed", "kube_job_status_active",
        "kube_job_status_failed", "kube_deployment_spec_replicas", "kube_deployment_status_replicas_available",
    },
    # tensorflow_serving/servables/tensorflow/util.cc (request_count: model_name, status; request_latency:
    # a Sampler in microseconds, model_name, API, entrypoint) as util/prometheus_exporter.cc names them.
    "TensorFlow Serving": {":tensorflow:serving:request_count", ":tensorflow:serving:request_latency_bucket"},
    "Prometheus (scrape health)": {"up"},
}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan", "atan2",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?:ms|s|m|h|d|w|y)?)(?![\w:])")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions or aggregations
    (followed by `(`), keywords, label names (inside {} or a by/on/... list) or durations."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        rest = text[match.end():].lstrip()
        if rest.startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def dcgm_default_counters() -> set[str]:
    """Fields the CSV enables (not commented out), except static `label` fields."""
    counters = set()
    for row in csv.reader(DCGM_COUNTERS.read_text(encoding="utf-8").splitlines()):
        if row and not row[0].lstrip().startswith("#") and row[0].strip():
            if row[1].strip() != "label":
                counters.add(row[0].strip())
    return counters


@pytest.fixture(scope="module")
def expressions() -> list[tuple[str, str]]:
    platform = load_platform(sample_config("platform-dev")["cloudml:platform"])
    out = []
    for group in rule_groups(prometheus_rules(platform)):
        for rule in group["rules"]:
            out.append((f"rule {rule.get('alert') or rule.get('record')}", rule["expr"]))
    for where, query in dashboard_queries(dashboard_config_maps(platform)):
        label_values = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip(), flags=re.S)
        out.append((f"dashboard {where}", label_values.group(1) if label_values else query))
    out.append(("KEDA gpu trigger", gpu_utilization_query("team-vision", "resnet")))
    out.append(("KEDA request trigger", request_rate_query("team-vision", "resnet")))
    return out


@pytest.fixture(scope="module")
def recorded() -> set[str]:
    platform = load_platform(sample_config("platform-dev")["cloudml:platform"])
    return {r["record"] for g in rule_groups(prometheus_rules(platform)) for r in g["rules"] if "record" in r}


def unknown_metrics(expressions, recorded) -> list[str]:
    known = dcgm_default_counters() | recorded | set().union(*STANDARD_METRICS.values())
    return [f"{where}: {name}" for where, expr in expressions for name in sorted(metric_names(expr) - known)]


def test_every_referenced_metric_is_known(expressions, recorded):
    assert unknown_metrics(expressions, recorded) == []


def test_every_declared_standard_metric_is_used(expressions):
    """The declared lists name only what we use, so they stay a reviewed inventory."""
    used = set().union(*(metric_names(expr) for _, expr in expressions))
    for exporter, metrics in STANDARD_METRICS.items():
        assert metrics <= used, (exporter, metrics - used)


def test_a_typo_in_a_metric_name_is_caught(expressions, recorded):
    mutated = [(w, e.replace("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_TEMPERATURE")) for w, e in expressions]
    assert unknown_metrics(mutated, recorded) == [
        "rule GpuTemperatureHigh: DCGM_FI_DEV_GPU_TEMPERATURE",
        "dashboard cloudml-gpu-fleet.json panel 'GPU temperature' A: DCGM_FI_DEV_GPU_TEMPERATURE",
    ]
    mutated = [(w, e.replace("kube_job_status_active", "kube_job_active")) for w, e in expressions]
    assert "rule TrainingJobStalled: kube_job_active" in unknown_metrics(mutated, recorded)


def test_dcgm_counters_read_from_the_csv():
    counters = dcgm_default_counters()
    assert {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE"} <= counters
    # Commented-out fields and label fields are not exported as metrics.
    assert not {"DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DRIVER_VERSION", "DCGM_FI_PROF_SM_ACTIVE"} & counters


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (namespace, pod) (rate(:tensorflow:serving:request_count{status!="OK", le="1e+06"}[5m])) > 0.05',
     {":tensorflow:serving:request_count"}),
    ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m]))) / 1e6 > 1", {"x_bucket"}),
    ("a > 0 unless on (UUID) a offset 10m", {"a"}),
    ('label_replace(up{job=~".*dcgm.*"}, "node", "$1", "Hostname", "(.+)") == bool 0', {"up"}),
    ("max by (node) (kube_node_status_condition == 0) * on (node) group_left (pool) cloudml:gpu_node:info",
     {"kube_node_status_condition", "cloudml:gpu_node:info"}),
    ("sum(rate(m[2m])) by (pod) or vector(0)", {"m"}),
    ("clamp_max(x, 1) and ignoring (type) y", {"x", "y"}),
])
def test_metric_names(expr, names):
    assert metric_names(expr) == names
