"""`promtool test rules` promql_expr_test cases: each recording rule, the PromQL queries the
KEDA ScaledObjects of model services scale on (components.workloads.model_service), a scale-to-zero
activation query, and the GPU fleet dashboard's panels with its variables substituted as Grafana
does, evaluated against synthetic series with the real label sets; each must return exactly the
expected samples."""

from __future__ import annotations

import json
import re

from components.monitoring import dashboard_config_maps
from components.spec import PlatformSpec
from components.workloads.model_service import gpu_utilization_query, request_rate_query
from promtool import NODE, NODE_2, dcgm, gpu_labels, ksm, model_service_target, pod_labels, series, xid, xid_labels

VISION_PODS = ("resnet-7d9f8c6b5-abcde", "resnet-7d9f8c6b5-fghij")
NLP_POD = "bert-train-x2k9q"


def expr_case(name: str, input_series: list[dict], tests: list[tuple[str, str, list[tuple[str, float]]]]) -> dict:
    """tests: (eval_time, expr, [(labels, value)])."""
    return {
        "name": name,
        "interval": "1m",
        "input_series": input_series,
        "promql_expr_test": [
            {"expr": expr, "eval_time": at, "exp_samples": [{"labels": labels, "value": value} for labels, value in samples]}
            for at, expr, samples in tests
        ],
    }


def team_gpus() -> list[dict]:
    """Two resnet GPUs (60%, 80%) in team-vision, one bert GPU (30%) in team-nlp, one spare GPU."""
    return [
        pod_labels("team-vision", VISION_PODS[0], "resnet", "modelService"),
        pod_labels("team-vision", VISION_PODS[1], "resnet", "modelService"),
        pod_labels("team-nlp", NLP_POD, "bert-train", "training"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "60x10", gpu=0, pod=VISION_PODS[0], container="serving"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "80x10", gpu=1, pod=VISION_PODS[1], container="serving"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "30x10", gpu=0, node=NODE_2, namespace="team-nlp", pod=NLP_POD),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "0x10", gpu=2, namespace=None),
    ]


def requests(namespace: str, pod: str, gpus: str, phase: str, node: str | None) -> list[dict]:
    where = {"namespace": namespace, "pod": pod, "uid": f"uid-{pod}"}
    extra = {"node": node} if node else {}
    return [
        ksm("kube_pod_container_resource_requests", f"{gpus}x10", **where, **extra, container="main",
            resource="nvidia_com_gpu", unit="integer"),
        ksm("kube_pod_status_phase", "1x10", **where, phase=phase),
    ]


def recording_cases() -> list[dict]:
    allocated = [
        *team_gpus(),
        *requests("team-vision", VISION_PODS[0], "1", "Running", NODE),
        *requests("team-vision", VISION_PODS[1], "1", "Running", NODE),
        *requests("team-vision", "resnet-train-waiting", "4", "Pending", None),  # unscheduled: holds no GPU
        *requests("team-vision", "resnet-train-done", "2", "Succeeded", NODE),  # finished: holds no GPU
        *requests("team-nlp", NLP_POD, "4", "Running", NODE_2),
        pod_labels("team-vision", "resnet-train-waiting", "resnet-train", "training"),
    ]
    info = "cloudml:pod_workload:info{{component=\"{c}\", namespace=\"{n}\", pod=\"{p}\", team=\"{t}\", workload=\"{w}\"}}"
    return [
        expr_case("pod workload info", team_gpus()[:3], [("5m", "cloudml:pod_workload:info", [
            (info.format(c="training", n="team-nlp", p=NLP_POD, t="nlp", w="bert-train"), 1),
            (info.format(c="modelService", n="team-vision", p=VISION_PODS[0], t="vision", w="resnet"), 1),
            (info.format(c="modelService", n="team-vision", p=VISION_PODS[1], t="vision", w="resnet"), 1),
        ])]),
        expr_case("GPU utilization by team and by workload", team_gpus(), [
            ("5m", "cloudml:gpu_utilization:avg_by_team", [
                ('cloudml:gpu_utilization:avg_by_team{team="nlp"}', 30), ('cloudml:gpu_utilization:avg_by_team{team="vision"}', 70)]),
            ("5m", "cloudml:gpu_utilization:avg_by_workload", [
                ('cloudml:gpu_utilization:avg_by_workload{namespace="team-nlp", team="nlp", workload="bert-train"}', 30),
                ('cloudml:gpu_utilization:avg_by_workload{namespace="team-vision", team="vision", workload="resnet"}', 70)]),
        ]),
        expr_case("GPUs allocated by team and by workload", allocated, [
            ("5m", "cloudml:gpu_allocated:sum_by_team", [
                ('cloudml:gpu_allocated:sum_by_team{team="nlp"}', 4), ('cloudml:gpu_allocated:sum_by_team{team="vision"}', 2)]),
            ("5m", "cloudml:gpu_allocated:sum_by_workload", [
                ('cloudml:gpu_allocated:sum_by_workload{namespace="team-nlp", team="nlp", workload="bert-train"}', 4),
                ('cloudml:gpu_allocated:sum_by_workload{namespace="team-vision", team="vision", workload="resnet"}', 2)]),
        ]),
        expr_case("GPU nodes", [
            ksm("kube_node_labels", "1x10", node=NODE, label_cloudml_io_pool="a10g", label_cloudml_io_gpu_type="a10g"),
            ksm("kube_node_status_allocatable", "4x10", node=NODE, resource="nvidia_com_gpu", unit="integer"),
            ksm("kube_node_status_allocatable", "8x10", node=NODE_2, resource="nvidia_com_gpu", unit="integer"),
            ksm("kube_node_labels", "1x10", node="ip-10-40-0-5.us-west-2.compute.internal"),  # system node
            ksm("kube_node_status_allocatable", "4x10", node="ip-10-40-0-5.us-west-2.compute.internal", resource="cpu", unit="core"),
        ], [("5m", "cloudml:gpu_node:info", [
            (f'cloudml:gpu_node:info{{node="{NODE}", pool="a10g"}}', 1), (f'cloudml:gpu_node:info{{node="{NODE_2}"}}', 1)])]),
    ]


def owner(namespace: str, pod: str, kind: str, name: str) -> dict:
    return ksm("kube_pod_owner", "1x10", namespace=namespace, pod=pod, uid=f"uid-{pod}", owner_kind=kind,
               owner_name=name, owner_is_controller="true")


def serving_requests(pod: str, per_minute: int, namespace: str = "team-vision") -> dict:
    workload = pod.rsplit("-", 2)[0]  # the Deployment's name: pod <deployment>-<hash>-<suffix>
    labels = {**model_service_target(namespace, pod, workload), "model_name": "resnet", "status": "OK"}
    return {"series": series(":tensorflow:serving:request_count", labels), "values": f"0+{per_minute}x10"}


def keda_cases() -> list[dict]:
    """The service `resnet`'s two pods: GPUs at 60% and 80%, 60 requests a minute each. Beside it,
    `resnet-v2` (a Deployment whose name starts the same) and a training Job `resnet-train` on
    the same node, whose series must not count."""
    other = "resnet-v2-5f6d7c8b9-xyz12"
    job_pod = "resnet-train-28h4k"
    cluster = [
        *(owner("team-vision", p, "ReplicaSet", "resnet-7d9f8c6b5") for p in VISION_PODS),
        owner("team-vision", other, "ReplicaSet", "resnet-v2-5f6d7c8b9"),
        owner("team-vision", job_pod, "Job", "resnet-train"),
        owner("team-nlp", "resnet-7d9f8c6b5-zzzzz", "ReplicaSet", "resnet-7d9f8c6b5"),  # same names, other team
        dcgm("DCGM_FI_DEV_GPU_UTIL", "60x10", gpu=0, pod=VISION_PODS[0], container="serving"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "80x10", gpu=1, pod=VISION_PODS[1], container="serving"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "10x10", gpu=2, pod=other, container="serving"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "100x10", gpu=3, pod=job_pod),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "0x10", gpu=0, node=NODE_2, namespace="team-nlp", pod="resnet-7d9f8c6b5-zzzzz"),
        dcgm("DCGM_FI_DEV_GPU_UTIL", "0x10", gpu=4, namespace=None),
        serving_requests(VISION_PODS[0], 60), serving_requests(VISION_PODS[1], 60),
        serving_requests(other, 600), serving_requests("resnet-7d9f8c6b5-zzzzz", 600, namespace="team-nlp"),
    ]
    return [
        expr_case("KEDA queries of model service resnet", cluster, [
            ("8m", gpu_utilization_query("team-vision", "resnet"), [("{}", 70)]),
            ("8m", request_rate_query("team-vision", "resnet"), [("{}", 2)]),
        ]),
        expr_case("KEDA queries with no series: 0, not empty", [owner("team-vision", other, "ReplicaSet", "resnet-v2-5f6d7c8b9")], [
            ("5m", gpu_utilization_query("team-vision", "resnet"), [("{}", 0)]),
            ("5m", request_rate_query("team-vision", "resnet"), [("{}", 0)]),
        ]),
    ]


# --- the GPU fleet dashboard: pool and node variables ---------------------------------------------

NODE_3 = "ip-10-40-1-77.us-west-2.compute.internal"
NODE_4 = "ip-10-40-2-90.us-west-2.compute.internal"
# node -> (pool, the exporter's node label, [(gpu, utilization %, XID code)]): each pool has a node
# labelled `Hostname` (released dcgm-exporter) and one labelled `hostname` (newer ones).
FLEET = {
    NODE: ("a10g", "Hostname", [(0, 60, 0), (1, 80, 0)]),
    NODE_3: ("a10g", "hostname", [(0, 40, 79)]),
    NODE_2: ("l4-spot", "Hostname", [(0, 10, 48)]),
    NODE_4: ("l4-spot", "hostname", [(0, 30, 0)]),
}
GRAFANA_ALL = ".*"  # the variables' allValue (components/monitoring/dashboards.py)
_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)\}")


def fleet_panels(platform: PlatformSpec) -> dict[str, str]:
    """title -> query of every GPU panel (one reading dcgm-exporter series) of the fleet dashboard,
    as the ConfigMap the platform installs holds it."""
    (board,) = [json.loads(text) for m in dashboard_config_maps(platform) for key, text in m["data"].items()
                if key == "cloudml-gpu-fleet.json"]
    return {p["title"]: t["expr"] for p in board["panels"] for t in p["targets"] if "DCGM_" in t["expr"]}


def grafana(expr: str, **values: str) -> str:
    """The query Grafana sends with these variable values (single values, or the allValue)."""
    return _VARIABLE.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)


def _where(node: str, gpu: int) -> dict:
    """gpu_labels() arguments of one GPU of FLEET (each held by a pod of team-vision)."""
    return {"gpu": gpu, "node": node, "node_label": FLEET[node][1], "pod": f"worker-{gpu}-{node[3:12]}"}


def fleet_series() -> list[dict]:
    out = []
    for node, (pool, _, gpus) in FLEET.items():
        out.append(ksm("kube_node_labels", "1x10", node=node, label_cloudml_io_pool=pool, label_cloudml_io_gpu_type=pool))
        for gpu, util, code in gpus:
            where = _where(node, gpu)
            out += [dcgm("DCGM_FI_DEV_GPU_UTIL", f"{util}x10", **where),
                    dcgm("DCGM_FI_DEV_FB_USED", "12000x10", **where), dcgm("DCGM_FI_DEV_FB_FREE", "12000x10", **where),
                    dcgm("DCGM_FI_DEV_GPU_TEMP", "60x10", **where), dcgm("DCGM_FI_DEV_POWER_USAGE", "150x10", **where),
                    xid(code, f"{code}x10", **where)]
    return out


def _sample(node: str, gpu: int, value: float, **extra: str) -> tuple[str, float]:
    return series("", {**gpu_labels(**_where(node, gpu)), "node": node, "pool": FLEET[node][0], **extra}), value


def fleet_dashboard_cases(platform: PlatformSpec) -> list[dict]:
    """The fleet dashboard's GPU panels, with $pool/$node substituted as Grafana sends them, over GPUs
    of two pools whose exporters write `Hostname` or `hostname`: each panel keeps only the selected
    pool's (or node's) GPUs."""
    panels = fleet_panels(platform)
    a10g = {"pool": "a10g", "node": GRAFANA_ALL}
    everything = {"pool": GRAFANA_ALL, "node": GRAFANA_ALL}
    one_node = {"pool": GRAFANA_ALL, "node": NODE_4}
    per_gpu, by_pool, by_node = panels["GPU utilization per GPU"], panels["Average GPU utilization by pool"], panels["GPU utilization by node"]
    return [
        expr_case("fleet dashboard, pool a10g: every GPU panel shows pool a10g only", fleet_series(), [
            ("5m", f"group by (pool) ({grafana(query, **a10g)})", [('{pool="a10g"}', 1)]) for query in panels.values()
        ]),
        expr_case("fleet dashboard, pool a10g: its three GPUs, Hostname and hostname alike", fleet_series(), [
            ("5m", grafana(per_gpu, **a10g), [_sample(NODE, 0, 60), _sample(NODE, 1, 80), _sample(NODE_3, 0, 40)]),
            ("5m", grafana(by_pool, **a10g), [('{pool="a10g"}', 60)]),
            ("5m", grafana(by_node, **a10g), [(f'{{node="{NODE}", pool="a10g"}}', 70), (f'{{node="{NODE_3}", pool="a10g"}}', 40)]),
            ("5m", grafana(panels["Last XID error (non-zero only)"], **a10g),
             [(series("", {**xid_labels(79, **_where(NODE_3, 0)), "node": NODE_3, "pool": "a10g"}), 79)]),
        ]),
        expr_case("fleet dashboard, all pools: average utilization by pool", fleet_series(), [
            ("5m", grafana(by_pool, **everything), [('{pool="a10g"}', 60), ('{pool="l4-spot"}', 20)]),
        ]),
        expr_case("fleet dashboard, one node (hostname-labelled) of all pools", fleet_series(), [
            ("5m", grafana(per_gpu, **one_node), [_sample(NODE_4, 0, 30)]),
        ]),
    ]


# --- a scale-to-zero activation query (components.spec.ScaleToZeroSpec) ---------------------------

def gateway_requests(route: str, pod: str, per_minute: int) -> dict:
    """A request counter of a gateway in front of the model services (the kind of series an
    activation query reads while the service has no replica)."""
    labels = {"route": route, "code": "200", "job": "gateway/api-gateway", "namespace": "gateway", "pod": pod,
              "instance": f"10.40.3.{len(pod)}:9090", "container": "gateway", "endpoint": "metrics"}
    return {"series": series("gateway_requests_total", labels), "values": f"0+{per_minute}x10"}


def activation_case(query: str, route: str) -> dict:
    """`query` (a gateway's request rate to `route`) over two gateway pods sending 1 and 2 requests a
    second to the route, and 10 a second to another route: one value, 3."""
    return expr_case(f"activation query {query}", [
        gateway_requests(route, "api-gateway-7c9d-a1", 60), gateway_requests(route, "api-gateway-7c9d-b2", 120),
        gateway_requests("other", "api-gateway-7c9d-a1", 600),
    ], [("5m", query, [("{}", 3)])])
