"""Cross-stack checks of a team stack against its platform's outputs (`components.platform_view`):
GPU quota (error over it, warning near it), load-balancer exposure, Prometheus for autoscaling, the
team volumes and shared storage the workloads need. Exact problem text, as a user sees it."""

from __future__ import annotations

from components.platform_view import team_platform_problems, team_platform_warnings
from components.spec import load_team
from workload_fixtures import VOLUME_CLAIMS, platform_outputs, platform_view, team_config

TRAIN = {"kind": "training", "name": "train", "command": ["python"]}
SERVE = {"kind": "modelService", "name": "serve", "model": "m"}


def tenant(quota: int, volumes: dict | None = None) -> dict:
    team = platform_outputs()["teams"]["vision"]
    return {"vision": {**team, "gpuQuota": quota, "volumes": VOLUME_CLAIMS if volumes is None else volumes}}


def check(*workloads: dict, **outputs) -> list[str]:
    spec = load_team(team_config(*workloads))
    return [str(p) for p in team_platform_problems(spec, platform_view(**outputs))]


def test_workloads_over_the_gpu_quota_are_one_problem_listing_each_workload():
    # serve: 3 replicas + 1 pod of rolling-update surge.
    assert check({**TRAIN, "gpus": 4}, {**SERVE, "gpus": 1, "replicas": 3}, teams=tenant(6)) == [
        "cloudml:team.workloads: can hold 8 GPUs at once (train 4, serve 4), more than the team's quota of 6; "
        "the namespace's ResourceQuota would refuse what goes beyond it (got 8). Fix: lower gpus, replicas, parallelism or worker "
        "counts, or ask the platform team to raise the quota (cloudml:platform.teams.vision.gpuQuota)"
    ]


def test_workloads_exactly_at_the_quota_pass_with_a_warning():
    spec = load_team(team_config({**TRAIN, "gpus": 4}, {**SERVE, "gpus": 1, "replicas": 1}))
    view = platform_view(teams=tenant(6))
    assert team_platform_problems(spec, view) == []
    assert team_platform_warnings(spec, view) == [
        "cloudml:team.workloads: can hold 6 of the team's 6 GPUs at once; runs started by hand or other stacks of "
        "the team may wait for GPUs"
    ]


def test_workloads_well_under_the_quota_get_no_warning():
    spec = load_team(team_config({**TRAIN, "gpus": 4}))
    assert team_platform_warnings(spec, platform_view(teams=tenant(8))) == []


def test_internet_facing_service_on_a_platform_that_forbids_it():
    assert check({**SERVE, "expose": "internet", "sourceCidrs": ["203.0.113.0/24"]}) == [
        'cloudml:team.workloads[0].expose: (workload serve) asks for an internet-facing load balancer, which platform stack '
        'org/cloudml/platform-x does not allow (got "internet"). Fix: use expose: internal (reachable in the VPC), '
        "or ask the platform team to set cloudml:platform.loadBalancing.allowInternetFacing"
    ]


def test_internet_facing_service_must_stay_inside_the_platforms_cidrs():
    lb = {"allowInternetFacing": True, "internetFacingCidrs": ["203.0.113.0/24"]}
    ok = {**SERVE, "expose": "internet", "sourceCidrs": ["203.0.113.128/25"]}
    assert check(ok, loadBalancing=lb) == []
    wide = {**SERVE, "expose": "internet", "sourceCidrs": ["203.0.113.128/25", "198.51.100.0/24"]}
    assert check(wide, loadBalancing=lb) == [
        'cloudml:team.workloads[0].sourceCidrs[1]: (workload serve) is outside the CIDRs the platform lets internet-facing load '
        'balancers accept (got "198.51.100.0/24"). Fix: use CIDRs inside 203.0.113.0/24'
    ]


def test_autoscaling_needs_the_platforms_prometheus():
    scaled = {**SERVE, "gpus": 1, "autoscale": {"maxReplicas": 2}}
    assert check(scaled) == []
    assert check(scaled, prometheusUrl=None) == [
        "cloudml:team.workloads[0].autoscale: (workload serve) needs Prometheus, and platform stack org/cloudml/platform-x exports no "
        "prometheusUrl (monitoring is not deployed). Fix: use a fixed replicas count until the platform runs monitoring"
    ]


def test_a_volume_the_platform_does_not_provide():
    volumes = {k: v for k, v in VOLUME_CLAIMS.items() if k != "shared"}
    assert check({**TRAIN, "volumes": [{"source": "shared", "mountPath": "/mnt/shared"}]}, teams=tenant(8, volumes)) == [
        'cloudml:team.workloads[0].volumes[0].source: (workload train) is a volume platform stack org/cloudml/platform-x does not '
        'provide (its sharedFilesystem is none) (got "shared"). Fix: use one of: datasets, logs, models'
    ]


def test_model_service_and_tensorboard_need_their_bucket_volumes():
    problems = check(SERVE, TRAIN, {"kind": "tensorboard", "name": "tb", "logsFrom": "train"}, teams=tenant(8, {}))
    assert problems == [
        "cloudml:team.workloads[0].kind: (workload serve) reads the team's models bucket through the platform's `models` volume, "
        "which platform stack org/cloudml/platform-x does not provide (got \"modelService\"). Fix: run `pulumi up` "
        "on the platform stack with this version of cloudml first",
        "cloudml:team.workloads[2].kind: (workload tb) reads the team's logs bucket through the platform's `logs` volume, "
        "which platform stack org/cloudml/platform-x does not provide (got \"tensorboard\"). Fix: run `pulumi up` "
        "on the platform stack with this version of cloudml first",
    ]


def test_dev_environment_needs_a_shared_file_system_for_its_home():
    assert check({"kind": "devEnvironment", "name": "dev"}, sharedStorageClass=None) == [
        'cloudml:team.workloads[0].kind: (workload dev) needs a persistent home volume, and platform stack org/cloudml/platform-x '
        'has no shared file system (got "devEnvironment"). Fix: ask the platform team to set '
        "cloudml:platform.storage.sharedFilesystem: efs"
    ]


def test_cpu_memory_storage_and_load_balancers_are_checked_against_their_quotas():
    """Every quota the namespace has, not only GPUs: CPU and memory (pods x requests, a dev environment's
    TensorBoard sidecar included), dev-environment homes against the storage the platform's own claims
    leave, and LoadBalancer Services."""
    team = platform_outputs()["teams"]["vision"]
    team["quotas"] = {"cpu": "10", "memory": "40Gi", "storageBytes": 60 * 2**30, "loadBalancers": 1}
    problems = check(
        {**TRAIN, "cpu": "4", "memory": "16Gi"},
        {"kind": "devEnvironment", "name": "dev", "cpu": "2", "memory": "8Gi", "homeSize": "50Gi", "expose": "internal"},
        {**SERVE, "cpu": "1", "memory": "4Gi", "replicas": 2, "expose": "internal"},
        {"kind": "devEnvironment", "name": "dev2", "cpu": "500m", "memory": "1Gi", "homeSize": "20Gi"},
        teams={"vision": team},
    )
    assert problems == [
        "cloudml:team.workloads: can hold 10.5 CPUs at once (train 4, dev 2.5, serve 3, dev2 1), more than the team's "
        "quota of 10; the namespace's ResourceQuota would refuse what goes beyond it (got 10.5). Fix: lower cpu, "
        "replicas, parallelism or worker counts, or ask the platform team to raise the quota "
        "(cloudml:platform.teams.vision.cpuQuota)",
        "cloudml:team.workloads: can hold 70Gi storage for the team's own claims at once (dev 50Gi, dev2 20Gi), more "
        "than the team's quota of 60Gi; the namespace's ResourceQuota would refuse what goes beyond it (got 70Gi). "
        "Fix: lower devEnvironment homeSize, or ask the platform team to raise the quota "
        "(cloudml:platform.teams.vision.storageQuota)",
        "cloudml:team.workloads: can hold 2 LoadBalancer Services at once (dev 1, serve 1), more than the team's "
        "quota of 1; the namespace's ResourceQuota would refuse what goes beyond it (got 2). Fix: expose fewer "
        "workloads through a load balancer (port-forward or expose: cluster), or ask the platform team to raise the "
        "quota (cloudml:platform.teams.vision.loadBalancers)",
    ]


# --- a workload's GPU pods against what the pools can ever hold ------------------------------------
# The fixtures' pools: a10g 4 GPUs x max 4 nodes (16 GPUs), l4 1 GPU x max 8 nodes.


def test_distributed_job_larger_than_the_pools_is_refused_because_jobset_does_not_gang_schedule():
    dist = {"kind": "distributedTraining", "name": "big", "command": ["python"], "workers": 5, "gpusPerWorker": 4}
    assert check(dist) == [
        "cloudml:team.workloads[0].workers: (workload big) runs 5 pods of 4 a10g GPU(s) at once, but the a10g pools "
        "of org/cloudml/platform-x hold at most 4 such pods at their max size; JobSet does not gang-schedule, so "
        "the pods that start would hold their GPUs while the others stay Pending and the job never runs (got 5). "
        "Fix: use 4 or fewer GPU pods (chief, workers, evaluator), or fewer GPUs per worker, or ask the platform "
        "team to raise the max of the a10g pools"
    ]
    assert check({**dist, "workers": 4}) == []  # exactly the pools' 16 GPUs


def test_pods_are_packed_per_node_not_per_gpu():
    """Pods of 3 GPUs: a 4-GPU node holds one, so 4 nodes hold 4 pods (12 GPUs), not 5 (15 of the 16 GPUs)."""
    dist = {"kind": "distributedTraining", "name": "three", "command": ["python"], "chief": 1, "workers": 4, "gpusPerWorker": 3}
    assert check(dist)[0].startswith(
        "cloudml:team.workloads[0].workers: (workload three) runs 5 pods of 3 a10g GPU(s) at once, but the a10g "
        "pools of org/cloudml/platform-x hold at most 4 such pods at their max size;")
    assert check({**dist, "chief": 0}) == []


def test_service_whose_rollout_pod_cannot_fit_is_refused():
    serve = {**SERVE, "gpus": 1, "gpuType": "l4", "autoscale": {"maxReplicas": 8}}
    assert check(serve) == [
        "cloudml:team.workloads[0].autoscale.maxReplicas: (workload serve) runs 9 pods of 1 l4 GPU(s) at once, but "
        "the l4 pools of org/cloudml/platform-x hold at most 8 such pods at their max size; the pods beyond that "
        "would stay Pending, and a rollout's extra pod could never start (got 8). Fix: use 7 or fewer replicas (a "
        "rollout starts one pod more), or ask the platform team to raise the max of the l4 pools"
    ]
    assert check({**SERVE, "gpus": 4, "replicas": 4})[0].startswith(
        "cloudml:team.workloads[0].replicas: (workload serve) runs 5 pods of 4 a10g GPU(s) at once")


def test_sweep_parallelism_beyond_the_pools_is_a_warning_not_an_error():
    """Trials beyond what the pools hold queue and run later (unlike a distributed job's workers,
    which wait for each other): the stack is allowed, with a warning that says so."""
    sweep = {"kind": "sweep", "name": "lr", "command": ["python"], "gpus": 1, "gpuType": "l4",
             "parameters": {"LR": list(range(10))}, "parallelism": 9}
    assert check(sweep) == []
    spec = load_team(team_config(sweep))
    assert team_platform_warnings(spec, platform_view()) == [
        "cloudml:team.workloads[0].parallelism: (workload lr) runs 9 trials of 1 l4 GPU(s) at once, but the l4 "
        "pools of org/cloudml/platform-x hold at most 8 at their max size; the others wait as Pending pods (set "
        "parallelism to 8 or less, or ask the platform team to raise the max of the l4 pools)"
    ]
    assert team_platform_warnings(load_team(team_config({**sweep, "parallelism": 8})), platform_view()) == []


def test_pools_of_the_same_gpu_type_add_up():
    pools = {
        "a10g": {"gpuType": "a10g", "gpusPerNode": 4, "maxNodes": 4, "capacity": "on-demand"},
        "a10g-spot": {"gpuType": "a10g", "gpusPerNode": 1, "maxNodes": 3, "capacity": "spot"},
    }
    dist = {"kind": "distributedTraining", "name": "d", "command": ["python"], "workers": 19, "gpusPerWorker": 1}
    assert check(dist, gpuPools=pools) == []  # 16 + 3
    assert check({**dist, "workers": 20}, gpuPools=pools)[0].startswith(
        "cloudml:team.workloads[0].workers: (workload d) runs 20 pods of 1 a10g GPU(s) at once, but the a10g pools "
        "of org/cloudml/platform-x hold at most 19 such pods")
