"""Grafana dashboards: ConfigMaps the kube-prometheus-stack Grafana sidecar picks up, holding valid
dashboard JSON (uid, title, datasource variable, panels laid out without overlap, every target's
PromQL parsed by the real promtool), and a GPU fleet dashboard whose GPU panels follow its pool and
node variables (their queries evaluated by `promtool test rules` over two pools' GPUs)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import sample_config
from k8s_schema import schema_errors
from promtool import promtool, rules_file, run_unit_tests
from promtool.expr_cases import fleet_dashboard_cases, fleet_panels, grafana

from components.monitoring import dashboard_config_maps, prometheus_rules
from components.monitoring.dashboards import dashboard, dashboard_queries, expand_gpu_macros, gpu_join
from components.render import RenderError
from components.spec import load_platform

EXPECTED = {
    "cloudml-dashboard-gpu-fleet": ("cloudml-gpu-fleet", "cloudml / GPU fleet"),
    "cloudml-dashboard-team-gpus": ("cloudml-team-gpus", "cloudml / Team GPUs"),
    "cloudml-dashboard-training-jobs": ("cloudml-training-jobs", "cloudml / Training jobs"),
    "cloudml-dashboard-model-services": ("cloudml-model-services", "cloudml / Model services"),
}
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


@pytest.fixture(scope="module")
def platform():
    return load_platform(sample_config("platform-dev")["cloudml:platform"])


@pytest.fixture(scope="module")
def maps(platform):
    return dashboard_config_maps(platform)


def boards(maps):
    return {m["metadata"]["name"]: json.loads(next(iter(m["data"].values()))) for m in maps}


def test_one_config_map_per_dashboard_for_the_grafana_sidecar(maps):
    assert sorted(m["metadata"]["name"] for m in maps) == sorted(EXPECTED)
    for config_map in maps:
        assert schema_errors(config_map) == []
        assert config_map["metadata"]["namespace"] == "monitoring"
        # kube-prometheus-stack's Grafana sidecar defaults: label grafana_dashboard, value "1".
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        uid = EXPECTED[config_map["metadata"]["name"]][0]
        assert list(config_map["data"]) == [f"{uid}.json"]


def test_dashboard_identity(maps):
    for name, board in boards(maps).items():
        assert (board["uid"], board["title"]) == EXPECTED[name]
        assert board["schemaVersion"] == 39
        assert board["editable"] is False


def test_panels_have_targets_and_do_not_overlap(maps):
    for name, board in boards(maps).items():
        panels = board["panels"]
        assert len(panels) >= 4, name
        assert [p["id"] for p in panels] == list(range(1, len(panels) + 1))
        cells = set()
        for panel in panels:
            assert panel["title"] and panel["targets"], (name, panel)
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["expr"].strip() and target["datasource"] == panel["datasource"]
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24
            covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
            assert not covered & cells, (name, panel["title"])
            cells |= covered


def test_every_variable_used_is_defined(maps):
    for name, board in boards(maps).items():
        defined = {v["name"] for v in board["templating"]["list"]}
        assert "datasource" in defined
        text = json.dumps([p["targets"] for p in board["panels"]] + [v.get("query") for v in board["templating"]["list"]])
        used = {a or b for a, b in VARIABLE.findall(text)} - {"1"}  # $1: label_replace's capture group
        assert used <= defined, (name, used - defined)


def test_dashboards_cover_the_issue(maps):
    titles = {name: {p["title"] for p in board["panels"]} for name, board in boards(maps).items()}
    assert {"GPU utilization by node", "GPU memory used", "GPU temperature", "GPU power draw",
            "Last XID error (non-zero only)", "GPU nodes per pool", "Average GPU utilization by pool",
            "GPU utilization per GPU"} <= titles["cloudml-dashboard-gpu-fleet"]
    assert "GPUs allocated vs quota" in titles["cloudml-dashboard-team-gpus"]
    assert {"Requests per second by status", "Request latency p50 / p99", "Replicas", "GPU utilization"} <= \
        titles["cloudml-dashboard-model-services"]
    assert {"Running Jobs", "Failed Jobs", "GPU utilization per running Job"} <= titles["cloudml-dashboard-training-jobs"]


def promql_of(query: str) -> str:
    """A dashboard query as plain PromQL: label_values(<selector>, <label>) -> the selector; Grafana
    variables -> a regex any value fits (they only appear inside =~ matchers)."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query.strip(), flags=re.S)
    text = match.group(1) if match else query
    return VARIABLE.sub(lambda m: "$1" if m.group(1) == "1" else ".*", text)


def test_promtool_parses_every_dashboard_query(maps, tmp_path):
    queries = dashboard_queries(maps)
    assert len(queries) >= 25
    rules = [{"record": f"cloudml:dashboard_check_{i}", "expr": promql_of(q)} for i, (_, q) in enumerate(queries)]
    path = tmp_path / "dashboards.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promql_of():
    assert promql_of('label_values(cloudml:gpu_node:info{pool=~"$pool"}, node)') == 'cloudml:gpu_node:info{pool=~".*"}'
    assert promql_of('x{namespace=~"team-($team)"}') == 'x{namespace=~"team-(.*)"}'
    assert promql_of('label_replace(x, "team", "$1", "namespace", "team-(.+)")') == 'label_replace(x, "team", "$1", "namespace", "team-(.+)")'


def test_a_template_without_panels_is_refused():
    with pytest.raises(RenderError, match="panels"):
        dashboard({"uid": "x", "title": "X", "panels": []})


# --- the GPU fleet dashboard follows its pool and node variables ----------------------------------

JOIN = 'group_left (pool) cloudml:gpu_node:info{pool=~"$pool", node=~"$node"}'


def test_every_gpu_panel_of_the_fleet_dashboard_is_joined_to_the_selected_pool(platform):
    """Every panel reading dcgm-exporter series selects its GPUs through the pool/node join (so both
    variables apply, and `Hostname` and `hostname` both become `node`), never by a bare
    Hostname filter (which ignored the pool); every panel of the dashboard references $pool."""
    panels = fleet_panels(platform)
    assert set(panels) == {"Average GPU utilization by pool", "GPU utilization by node", "GPU utilization per GPU",
                           "GPU memory used", "GPU temperature", "GPU power draw", "Last XID error (non-zero only)"}
    for title, query in panels.items():
        assert "$pool" in query and JOIN in query, title
        assert '"node", "$1", "Hostname", "(.+)"' in query and '"node", "$1", "hostname", "(.+)"' in query, title
        assert "Hostname=~" not in query and "@gpu" not in query, title
    board = next(json.loads(t) for m in dashboard_config_maps(platform) for k, t in m["data"].items() if k == "cloudml-gpu-fleet.json")
    assert all("$pool" in t["expr"] for p in board["panels"] for t in p["targets"])


@pytest.mark.parametrize("case", fleet_dashboard_cases(load_platform(sample_config("platform-dev")["cloudml:platform"])),
                         ids=lambda c: c["name"])
def test_fleet_dashboard_queries_keep_only_the_selected_pool(platform, tmp_path, case):
    """promtool evaluates the fleet panels with $pool/$node as Grafana substitutes them (a pool and
    the allValue ".*" for node, or one node), over GPUs of pools a10g and l4-spot labelled Hostname
    or hostname, with the platform's recording rules loaded (cloudml:gpu_node:info)."""
    result = run_unit_tests(rules_file(prometheus_rules(platform), tmp_path / "rules.yaml"), [case], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_old_hostname_filter_would_fail_the_pool_case(platform, tmp_path):
    """The case is not vacuous: the previous panel (`DCGM_FI_DEV_GPU_UTIL{Hostname=~"$node"}`) with
    pool a10g and node All shows the l4-spot GPU and misses the hostname-labelled one."""
    (case,) = [c for c in fleet_dashboard_cases(platform) if "its three GPUs" in c["name"]]
    case["promql_expr_test"] = case["promql_expr_test"][:1]
    case["promql_expr_test"][0]["expr"] = grafana('DCGM_FI_DEV_GPU_UTIL{Hostname=~"$node"}', pool="a10g", node=".*")
    result = run_unit_tests(rules_file(prometheus_rules(platform), tmp_path / "rules.yaml"), [case], tmp_path)
    assert result.returncode == 1 and "FAILED" in result.stdout + result.stderr


def test_gpu_macro_expansion():
    """`@gpu(<PromQL>)` becomes the join, around any expression (parentheses and strings holding
    parentheses included), any number of times; an unbalanced one is refused."""
    assert gpu_join("DCGM_FI_DEV_GPU_TEMP") == (
        '(label_replace(label_replace(DCGM_FI_DEV_GPU_TEMP, "node", "$1", "Hostname", "(.+)"), '
        '"node", "$1", "hostname", "(.+)") * on (node) group_left (pool) cloudml:gpu_node:info{pool=~"$pool", node=~"$node"})')
    inner = 'max by (UUID) (x{a=~"(b|c)"})'
    assert expand_gpu_macros(f"avg by (pool) (@gpu({inner}))") == f"avg by (pool) ({gpu_join(inner)})"
    assert expand_gpu_macros("@gpu(a) / @gpu(b)") == f"{gpu_join('a')} / {gpu_join('b')}"
    assert expand_gpu_macros("sum(x)") == "sum(x)"
    with pytest.raises(RenderError, match="unbalanced"):
        expand_gpu_macros('@gpu(x{a=")"}')
