"""Grafana dashboards as ConfigMaps for kube-prometheus-stack's Grafana: `dashboard_config_maps(platform)`.

Each file in templates/monitoring/dashboards/ describes one dashboard compactly (uid, title,
variables, panels with their PromQL targets); `dashboard()` expands it into Grafana's dashboard
JSON: a Prometheus datasource variable, query variables, panel ids, a two-column grid layout, and
every panel and target bound to the datasource variable. The Grafana sidecar loads ConfigMaps
labelled `grafana_dashboard: "1"` (the chart's default label and value) from its namespace.

GPU series carry their node only as dcgm-exporter's `Hostname` (`hostname` in newer exporters) and
no pool, so a panel that must follow the `pool` and `node` variables joins them to
`cloudml:gpu_node:info`. Templates write that join as `@gpu(<PromQL>)` and `dashboard()` expands it
(`gpu_join`): one reviewed spelling instead of a long join repeated in every panel, and the raw
series at full resolution (a recording rule per DCGM metric would store every GPU series twice
and lag them by an evaluation interval). `@gpu(` is not valid PromQL, so an unexpanded use fails
`promtool` and the dashboard tests.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from components.render import TEMPLATES_DIR, RenderError
from components.spec import PlatformSpec

from components.monitoring.rules import NAMESPACE, RULE_LABELS

DASHBOARDS_DIR = TEMPLATES_DIR / "monitoring" / "dashboards"
SIDECAR_LABEL = "grafana_dashboard"
SIDECAR_LABEL_VALUE = "1"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Grafana's dashboard JSON model version the generated fields follow.
SCHEMA_VERSION = 39
PANEL_WIDTH, PANEL_HEIGHT, COLUMNS = 12, 8, 2

GPU_MACRO = "@gpu("
# dcgm-exporter's node label: `Hostname` in released versions, `hostname` in newer ones (SPECS).
GPU_NODE_LABELS = ("Hostname", "hostname")
# The GPU nodes the dashboard's variables select (Grafana substitutes $pool and $node; "All" is ".*",
# which also matches a node whose pool label is missing).
GPU_NODE_SELECTION = 'cloudml:gpu_node:info{pool=~"$pool", node=~"$node"}'


def gpu_join(expr: str) -> str:
    """`expr` (PromQL over dcgm-exporter series) with a `node` label copied from Hostname/hostname,
    joined to the selected GPU nodes: only their GPUs remain, each with its node's `pool`. The same
    join as the alert rules (DcgmExporterAbsentOnGpuNode)."""
    inner = expr.strip()
    for label in GPU_NODE_LABELS:
        inner = f'label_replace({inner}, "node", "$1", "{label}", "(.+)")'
    return f"({inner} * on (node) group_left (pool) {GPU_NODE_SELECTION})"


def _closing_parenthesis(text: str, opening: int) -> int:
    """Index of the parenthesis closing text[opening], skipping PromQL string literals."""
    depth, i = 0, opening
    while i < len(text):
        char = text[i]
        if char in "\"'`":
            end = i + 1
            while end < len(text) and text[end] != char:
                end += 2 if text[end] == "\\" and char != "`" else 1
            i = end
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise RenderError(f"unbalanced {GPU_MACRO}...) in dashboard query: {text}")


def expand_gpu_macros(expr: str) -> str:
    """Every `@gpu(<PromQL>)` of a dashboard query replaced by `gpu_join(<PromQL>)`."""
    out, rest = [], expr
    while (start := rest.find(GPU_MACRO)) >= 0:
        opening = start + len(GPU_MACRO) - 1
        end = _closing_parenthesis(rest, opening)
        out += [rest[:start], gpu_join(expand_gpu_macros(rest[opening + 1:end]))]
        rest = rest[end + 1:]
    return "".join(out) + rest


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def _variable(spec: dict[str, Any]) -> dict[str, Any]:
    variable = {
        "name": spec["name"],
        "label": spec.get("label", spec["name"]),
        "type": "query",
        "datasource": dict(DATASOURCE),
        "query": {"query": spec["query"], "refId": f"{spec['name']}-variable"},
        "definition": spec["query"],
        # 2: refresh the values whenever the time range changes.
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "sort": 1,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
    }
    if "regex" in spec:
        variable["regex"] = spec["regex"]
    return variable


def _panel(index: int, spec: dict[str, Any]) -> dict[str, Any]:
    targets = []
    for ref, target in zip(string.ascii_uppercase, spec["targets"]):
        targets.append({
            "refId": ref,
            "datasource": dict(DATASOURCE),
            "expr": expand_gpu_macros(target["expr"]),
            "legendFormat": target.get("legendFormat", "__auto"),
            "instant": bool(target.get("instant", False)),
            "range": not target.get("instant", False),
        })
    return {
        "id": index + 1,
        "type": spec["type"],
        "title": spec["title"],
        "datasource": dict(DATASOURCE),
        "gridPos": {
            "x": (index % COLUMNS) * PANEL_WIDTH,
            "y": (index // COLUMNS) * PANEL_HEIGHT,
            "w": PANEL_WIDTH,
            "h": PANEL_HEIGHT,
        },
        "fieldConfig": {"defaults": {"unit": spec.get("unit", "short")}, "overrides": []},
        "options": {},
        "targets": targets,
    }


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """Grafana's dashboard JSON for one compact template."""
    missing = [key for key in ("uid", "title", "panels") if not template.get(key)]
    if missing:
        raise RenderError(f"dashboard template lacks {', '.join(missing)}")
    datasource = {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"selected": True, "text": "Prometheus", "value": "prometheus"},
    }
    return {
        "uid": template["uid"],
        "title": template["title"],
        "description": template.get("description", ""),
        "tags": list(template.get("tags", [])),
        "editable": False,
        "timezone": "utc",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [datasource] + [_variable(v) for v in template.get("variables", [])]},
        "annotations": {"list": []},
        "panels": [_panel(i, p) for i, p in enumerate(template["panels"])],
    }


def dashboards() -> list[dict[str, Any]]:
    """Every dashboard of templates/monitoring/dashboards/, expanded."""
    out = []
    for path in dashboard_files():
        try:
            template = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise RenderError(f"dashboard template {path.name} is not valid JSON: {error}") from error
        out.append(dashboard(template))
    return out


def dashboard_config_maps(platform: PlatformSpec) -> list[dict]:
    """One ConfigMap per dashboard in namespace `monitoring`, labelled for the Grafana sidecar.

    The dashboards query only the platform's own recording rules and standard metrics, so they are
    the same for every platform; `platform` is taken for symmetry with prometheus_rules."""
    del platform
    maps = []
    for board in dashboards():
        maps.append({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"cloudml-dashboard-{board['uid'].removeprefix('cloudml-')}",
                "namespace": NAMESPACE,
                "labels": {**{k: v for k, v in RULE_LABELS.items() if k != "release"}, SIDECAR_LABEL: SIDECAR_LABEL_VALUE},
            },
            "data": {f"{board['uid']}.json": json.dumps(board, indent=2, sort_keys=True)},
        })
    return maps


def dashboard_queries(maps: list[dict]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable in these ConfigMaps."""
    out = []
    for config_map in maps:
        for key, text in config_map["data"].items():
            board = json.loads(text)
            for variable in board["templating"]["list"]:
                if variable["type"] == "query":
                    out.append((f"{key} variable {variable['name']}", variable["query"]["query"]))
            for panel in board["panels"]:
                for target in panel["targets"]:
                    out.append((f"{key} panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out
