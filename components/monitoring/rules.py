"""The platform's Prometheus rules: `prometheus_rules(platform)` renders the PrometheusRule objects
(recording rules and alerts) from templates/monitoring/, with thresholds from the platform's
monitoring config. Pure: spec in, Kubernetes objects out.

The templates use `[[ ]]` / `[% %]` as Jinja delimiters, so PromQL's braces and the Go templates
of alert annotations (`{{ $labels.pod }}`) are written as they are, never escaped.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import jinja2
import yaml

from components.labels import IDLE_TIMEOUT_LABEL
from components.render import SAFE_LOADER, TEMPLATES_DIR, RenderError, yaml_scalar
from components.spec import PlatformSpec, team_namespace

# kube-prometheus-stack runs in this namespace (components/platform/tenancy.py says the same).
NAMESPACE = "monitoring"
# The Helm release name of kube-prometheus-stack. With the chart's default
# `prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues: true`, Prometheus loads only
# PrometheusRules labelled `release: <release name>`; the label keeps ours loaded either way.
PROMETHEUS_RELEASE = "kube-prometheus-stack"
RULE_LABELS = {
    "release": PROMETHEUS_RELEASE,
    "app.kubernetes.io/part-of": "cloudml",
    "app.kubernetes.io/managed-by": "cloudml",
    "app.kubernetes.io/component": "monitoring",
}
RULE_TEMPLATES = ("monitoring/recording-rules.yaml.j2", "monitoring/alert-rules.yaml.j2")

# Since v2, kube-state-metrics exports Kubernetes labels as `label_<sanitized key>` on
# kube_<kind>_labels only for keys allowlisted with --metric-labels-allowlist (the chart's
# `metricLabelsAllowlist`). The rules join on these; without them the per-workload recording rules,
# the dev-environment and model-service alerts stay empty.
KUBE_STATE_METRICS_LABELS = {
    "pods": ("app.kubernetes.io/component", "cloudml.io/team", "cloudml.io/workload", IDLE_TIMEOUT_LABEL),
    "nodes": ("cloudml.io/pool", "cloudml.io/gpu-type"),
}


def kube_state_metrics_allowlist() -> list[str]:
    """The kube-state-metrics chart value `metricLabelsAllowlist` the rules need."""
    return [f"{kind}=[{','.join(keys)}]" for kind, keys in KUBE_STATE_METRICS_LABELS.items()]


# Thresholds not in the platform's `monitoring` config: fixed, and named here.
GPU_MEMORY_USED_RATIO = 0.95
GPU_QUOTA_ALERT_RATIO = 0.9
MODEL_SERVICE_ERROR_RATIO = 0.05
MODEL_SERVICE_P99_LATENCY_SECONDS = 1.0
# A dev environment whose GPU has been idle this much longer than its own idle timeout (its pod's
# cloudml.io/idle-timeout label) has missed its idle shutdown.
DEV_IDLE_MARGIN_SECONDS = 3600
# How far back the dev-environment alert looks for the GPU's last busy moment, at what resolution;
# an environment idle longer than this counts as idle since then (or since its pod started).
DEV_IDLE_LOOKBACK = "7d"
DEV_IDLE_STEP = "5m"

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def seconds(value: Any) -> int:
    """A duration (seconds, or Prometheus text like "2h") in whole seconds."""
    if isinstance(value, bool):
        raise RenderError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _DURATION.match(str(value).strip())
    if not match or match.group(2) == "ms":
        raise RenderError(f"not a duration: {value!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def prometheus_duration(value: Any) -> str:
    """A duration as Prometheus writes it: the largest unit that divides it (7200 -> "2h")."""
    total = seconds(value)
    if total <= 0:
        raise RenderError(f"duration must be positive: {value!r}")
    for unit in ("d", "h", "m"):
        if total % _UNIT_SECONDS[unit] == 0:
            return f"{total // _UNIT_SECONDS[unit]}{unit}"
    return f"{total}s"


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _number(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
    env.filters["q"] = yaml_scalar
    env.filters["promql_str"] = promql_string
    return env


def rule_values(platform: PlatformSpec) -> dict[str, Any]:
    """Everything the rule templates use, resolved from the platform spec."""
    monitoring = platform.monitoring
    prefix = team_namespace("")  # "team-": letters and "-" only, nothing to escape in a regex
    if not re.fullmatch(r"[a-z0-9-]+", prefix):
        raise RenderError(f"team namespace prefix {prefix!r} needs regex escaping")
    team_ns_regex = prefix + ".+"
    timeout_label = "label_" + re.sub(r"[^a-zA-Z0-9_]", "_", IDLE_TIMEOUT_LABEL)
    return {
        "namespace": NAMESPACE,
        "labels": dict(RULE_LABELS),
        "team_ns_regex": team_ns_regex,
        "team_capture": prefix + "(.+)",
        "gpu_temperature": monitoring.gpu_temperature_celsius,
        "gpu_memory_ratio": _number(GPU_MEMORY_USED_RATIO),
        "gpu_memory_percent": _number(GPU_MEMORY_USED_RATIO * 100),
        "idle_percent": _number(monitoring.gpu_idle_utilization_percent),
        "idle_window": prometheus_duration(monitoring.gpu_idle_window),
        "quota_ratio": _number(GPU_QUOTA_ALERT_RATIO),
        "quota_percent": _number(GPU_QUOTA_ALERT_RATIO * 100),
        "error_ratio": _number(MODEL_SERVICE_ERROR_RATIO),
        "error_percent": _number(MODEL_SERVICE_ERROR_RATIO * 100),
        "latency_seconds": _number(MODEL_SERVICE_P99_LATENCY_SECONDS),
        "dev_idle_margin": prometheus_duration(DEV_IDLE_MARGIN_SECONDS),
        "dev_idle_margin_seconds": DEV_IDLE_MARGIN_SECONDS,
        "dev_idle_lookback": DEV_IDLE_LOOKBACK,
        "dev_idle_lookback_seconds": seconds(DEV_IDLE_LOOKBACK),
        "dev_idle_range": f"[{DEV_IDLE_LOOKBACK}:{DEV_IDLE_STEP}]",
        # Each dev environment pod with its idle timeout (seconds) as a label.
        "dev_timeouts": (f"max by (namespace, pod, {timeout_label}) "
                         f"(kube_pod_labels{{namespace=~{promql_string(team_ns_regex)}, {timeout_label}!=\"\"}})"),
        # NodePoolAtMaxSize per pool that can grow: a fixed-size pool (min = max) is always at its max.
        "pools": [{"name": pool.name, "max": pool.max} for pool in platform.gpu_pools if pool.min < pool.max],
    }


def render_rules_template(path: str, values: dict[str, Any]) -> dict:
    try:
        text = environment().get_template(path).render(**values)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {path}: {error}") from error
    try:
        docs = [doc for doc in yaml.load_all(text, Loader=SAFE_LOADER) if doc is not None]
    except yaml.YAMLError as error:
        raise RenderError(f"template {path} produced invalid YAML: {error}") from error
    if len(docs) != 1:
        raise RenderError(f"template {path} produced {len(docs)} objects, expected one PrometheusRule")
    return docs[0]


def prometheus_rules(platform: PlatformSpec) -> list[dict]:
    """The PrometheusRule objects (namespace `monitoring`): recording rules, then alerts."""
    values = rule_values(platform)
    return [render_rules_template(path, values) for path in RULE_TEMPLATES]


def rule_groups(rules: list[dict]) -> list[dict]:
    """The rule groups of PrometheusRule objects, as a Prometheus rules file holds them."""
    return [group for rule in rules for group in rule["spec"]["groups"]]
