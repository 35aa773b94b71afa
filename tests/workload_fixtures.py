"""Shared inputs of the workload tests: a platform's outputs as a team stack reads them, a team
config around some workloads, and rendering one workload the way `Team` does."""

from __future__ import annotations

import copy
from typing import Any

from components.platform_view import PlatformView
from components.render import WorkloadContext, render
from components.spec import load_team

IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/cloudml/trainer:0.1.0"
PLATFORM_STACK = "org/cloudml/platform-x"
BUCKETS = {
    "datasets": "ml-x-datasets-0a1b2c3d",
    "models": "ml-x-models-1b2c3d4e",
    "checkpoints": "ml-x-checkpoints-2c3d4e5f",
    "logs": "ml-x-logs-3d4e5f60",
}
# Namespace and service account deliberately not the naming convention's, so tests prove the
# values come from the platform's outputs.
NAMESPACE = "ns-of-vision"
SERVICE_ACCOUNT = "sa-of-vision"
VOLUME_CLAIMS = {"shared": "claim-shared", "datasets": "claim-datasets", "models": "claim-models", "logs": "claim-logs"}
PROMETHEUS_URL = "http://prometheus.monitoring.svc:9090"


def platform_outputs(team: str = "vision", **overrides: Any) -> dict:
    """Outputs of a platform stack with one tenant (`team`), two GPU pools and every optional output."""
    outputs = {
        "clusterName": "ml-x",
        "kubeconfig": "{}",
        "teams": {team: {
            "namespace": NAMESPACE, "serviceAccount": SERVICE_ACCOUNT, "gpuQuota": 64,
            "roleArn": "arn:aws:iam::111122223333:role/ml-x-vision", "volumes": dict(VOLUME_CLAIMS),
        }},
        "gpuPools": {
            "a10g": {"gpuType": "a10g", "gpusPerNode": 4, "maxNodes": 4, "capacity": "on-demand"},
            "l4-spot": {"gpuType": "l4", "gpusPerNode": 1, "maxNodes": 8, "capacity": "spot"},
        },
        "buckets": dict(BUCKETS),
        "loadBalancing": {"allowInternetFacing": False, "internetFacingCidrs": []},
        "sharedStorageClass": "cloudml-shared",
        "prometheusUrl": PROMETHEUS_URL,
    }
    outputs.update(copy.deepcopy(overrides))
    return outputs


def platform_view(team: str = "vision", **overrides: Any) -> PlatformView:
    return PlatformView.from_outputs(platform_outputs(team, **overrides), PLATFORM_STACK)


def team_config(*workloads: dict, name: str = "vision", defaults: dict | None = None, **extra: Any) -> dict:
    """`cloudml:team` config (camelCase) holding these workloads."""
    return {
        "name": name,
        "platformStack": PLATFORM_STACK,
        "defaults": {"image": IMAGE, "gpuType": "a10g"} if defaults is None else defaults,
        "workloads": list(workloads),
        **extra,
    }


def render_workload(workload: dict, *, team: str = "vision", view: PlatformView | None = None, **config: Any) -> list[dict]:
    """Render one workload (camelCase config, `kind` included); returns its Kubernetes objects.
    `config` adds top-level team keys (defaults, secrets) and must include any workload the first
    one references as `others=[...]`."""
    others = config.pop("others", [])
    spec = load_team(team_config(workload, *others, name=team, **config))
    return render(workload["kind"], WorkloadContext(spec, spec.workloads[0], view or platform_view(team)))


def by_kind(objects: list[dict]) -> dict[str, list[dict]]:
    """Kubernetes kind -> the objects of that kind, in order."""
    out: dict[str, list[dict]] = {}
    for obj in objects:
        out.setdefault(obj["kind"], []).append(obj)
    return out


def pod_templates(obj: dict) -> list[dict]:
    """Every pod template in an object (Job, CronJob, Deployment, JobSet); [] for pod-less kinds."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]]
    if obj["kind"] == "JobSet":
        return [rj["template"]["spec"]["template"] for rj in spec["replicatedJobs"]]
    if obj["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [spec["template"]]
    if obj["kind"] == "Pod":
        return [{"metadata": obj["metadata"], "spec": spec}]
    return []
