"""What a team stack reads from its platform stack's outputs (the cross-stack contract).

The platform exports these outputs; a team stack reads them through a StackReference, offline
(`cloudml plan`, from the planned platform) and online (`pulumi up`) alike. `team_platform_problems`
checks a team's workloads against them: the team exists, its GPU types are offered by a pool, each
pod fits on one node of such a pool, and the pods a workload runs at once fit those pools at their
max size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Network
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from components.errors import ConfigError, ConfigProblem, display_value, format_path
from components.fieldtypes import cpu_millis, quantity_bytes
from components.spec import (
    SHARED_VOLUME,
    TEAM_KEY,
    DevEnvironmentWorkload,
    DistributedTrainingWorkload,
    ModelServiceWorkload,
    SweepWorkload,
    TeamSpec,
    WorkloadBase,
    concurrent_cpu_memory,
    concurrent_gpus,
    load_balancers,
    requested_gpus,
    workload_ref,
)

# Stack output names; the platform exports them, the team reads them.
OUTPUT_CLUSTER_NAME = "clusterName"
OUTPUT_KUBECONFIG = "kubeconfig"
OUTPUT_TEAMS = "teams"
OUTPUT_GPU_POOLS = "gpuPools"
OUTPUT_BUCKETS = "buckets"
OUTPUT_SHARED_STORAGE_CLASS = "sharedStorageClass"
OUTPUT_LOAD_BALANCING = "loadBalancing"
OUTPUT_PROMETHEUS_URL = "prometheusUrl"
# Outputs a team stack must read; the rest are optional (older or smaller platforms lack them).
REQUIRED_OUTPUTS = (OUTPUT_CLUSTER_NAME, OUTPUT_TEAMS, OUTPUT_GPU_POOLS, OUTPUT_BUCKETS, OUTPUT_LOAD_BALANCING)
OPTIONAL_OUTPUTS = (OUTPUT_SHARED_STORAGE_CLASS, OUTPUT_PROMETHEUS_URL)
# Share of the GPU quota above which a team stack is warned that it is near its quota.
QUOTA_WARNING_SHARE = 0.9
# Kinds that mount one of the platform's team volumes whatever their config says.
KIND_VOLUMES = {"modelService": "models", "tensorboard": "logs"}


class _Output(BaseModel):
    # Outputs may gain fields in newer platform versions; a team stack ignores what it does not use.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TeamQuotas(_Output):
    """The namespace's ResourceQuota as a team stack checks against it."""

    cpu: str
    memory: str
    storage_bytes: int = Field(alias="storageBytes")
    load_balancers: int = Field(alias="loadBalancers")


class TeamTenancy(_Output):
    """The namespace and identity the platform made for one team."""

    namespace: str
    service_account: str = Field(alias="serviceAccount")
    gpu_quota: int = Field(alias="gpuQuota")
    # Data volume source (shared, datasets, models, logs) -> the PersistentVolumeClaim the platform
    # made for the team in its namespace.
    volumes: dict[str, str] = Field(default_factory=dict)
    # Older platforms do not export them; then only GPUs are checked.
    quotas: TeamQuotas | None = None


class GpuPoolOffer(_Output):
    """One GPU pool as teams see it."""

    gpu_type: str = Field(alias="gpuType")
    gpus_per_node: int = Field(alias="gpusPerNode")
    max_nodes: int = Field(alias="maxNodes")
    capacity: str


class LoadBalancingOffer(_Output):
    """Whether team services may ask for internet-facing load balancers, and from where."""

    allow_internet_facing: bool = Field(False, alias="allowInternetFacing")
    internet_facing_cidrs: list[str] = Field(default_factory=list, alias="internetFacingCidrs")


class PlatformView(_Output):
    """The platform outputs a team stack uses."""

    cluster_name: str = Field(alias=OUTPUT_CLUSTER_NAME)
    teams: dict[str, TeamTenancy] = Field(alias=OUTPUT_TEAMS)
    gpu_pools: dict[str, GpuPoolOffer] = Field(alias=OUTPUT_GPU_POOLS)
    buckets: dict[str, str] = Field(alias=OUTPUT_BUCKETS)
    load_balancing: LoadBalancingOffer = Field(alias=OUTPUT_LOAD_BALANCING)
    shared_storage_class: str | None = Field(None, alias=OUTPUT_SHARED_STORAGE_CLASS)
    prometheus_url: str | None = Field(None, alias=OUTPUT_PROMETHEUS_URL)

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any], platform_stack: str) -> "PlatformView":
        try:
            return cls.model_validate(outputs)
        except pydantic.ValidationError as error:
            missing = sorted({str(e["loc"][0]) for e in error.errors()})
            raise ConfigError([ConfigProblem(
                f"{TEAM_KEY}.platformStack",
                f"the platform stack's outputs lack or garble {', '.join(missing)}",
                "run `pulumi up` on the platform stack with this version of cloudml first",
                display_value(platform_stack),
            )]) from None

    def gpus_per_node(self, gpu_type: str) -> int:
        """The most GPUs of this type one pod can get on a single node (0 when no pool has it)."""
        return max((p.gpus_per_node for p in self.gpu_pools.values() if p.gpu_type == gpu_type), default=0)

    def pods_that_fit(self, gpu_type: str, gpus_per_pod: int) -> int:
        """How many pods of `gpus_per_pod` GPUs of this type the pools hold at once at their max size
        (a node of 4 GPUs holds one pod of 3)."""
        return sum(p.max_nodes * (p.gpus_per_node // gpus_per_pod) for p in self.gpu_pools.values() if p.gpu_type == gpu_type)


def team_platform_problems(team: TeamSpec, platform: PlatformView) -> list[ConfigProblem]:
    """Cross-stack checks: is the team a tenant, does every GPU pod fit a node, do a workload's GPU pods
    fit the pools at once, and the quotas, exposure and volumes the workloads need."""
    problems = []
    if team.name not in platform.teams:
        problems.append(ConfigProblem(
            f"{TEAM_KEY}.name",
            f"is not a team of platform stack {team.platform_stack}",
            f"add `{team.name}` under cloudml:platform.teams in the platform stack, or fix the name "
            f"(teams there: {', '.join(sorted(platform.teams)) or 'none'})",
            display_value(team.name),
        ))
    offered = sorted({p.gpu_type for p in platform.gpu_pools.values()})
    for i, workload in enumerate(team.workloads):
        gpus = requested_gpus(workload)
        if gpus == 0:
            continue
        ref = workload_ref(workload)
        gpu_type = workload.gpu_type or team.defaults.gpu_type
        field = "gpuType" if workload.gpu_type else None
        path = format_path(TEAM_KEY, ["workloads", i, field] if field else ["defaults", "gpuType"])
        per_node = platform.gpus_per_node(gpu_type)
        if per_node == 0:
            problems.append(ConfigProblem(
                path if field else format_path(TEAM_KEY, ["workloads", i]) + " (via defaults.gpuType)",
                f"{ref} GPU type {gpu_type} is offered by no GPU pool of {team.platform_stack}",
                f"use one of: {', '.join(offered) or 'none (the platform has no GPU pools)'}",
                display_value(gpu_type),
            ))
        elif gpus > per_node:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "gpusPerWorker" if workload.kind == "distributedTraining" else "gpus"]),
                f"{ref} asks for {gpus} GPUs in one pod, but the largest {gpu_type} node has {per_node}",
                f"request {per_node} or fewer GPUs per pod, or add a pool with larger {gpu_type} nodes to the platform",
                display_value(gpus),
            ))
        else:
            problems += _capacity_problems(team, platform, i, workload, gpu_type, gpus)
    problems += _quota_problems(team, platform)
    problems += _exposure_problems(team, platform)
    problems += _storage_problems(team, platform)
    return problems


def _capacity_problems(team: TeamSpec, platform: PlatformView, i: int, workload: WorkloadBase, gpu_type: str,
                       gpus: int) -> list[ConfigProblem]:
    """A workload whose GPU pods can never all run at once on the pools of their GPU type, even at
    their max size. JobSet has no gang scheduling: the workers that start hold their GPUs and wait
    for the rest forever. A service's rollout (one extra pod) would never finish; a sweep's
    parallelism beyond it only pretends."""
    pods = concurrent_gpus(workload) // gpus
    fit = platform.pods_that_fit(gpu_type, gpus)
    if pods <= fit or isinstance(workload, SweepWorkload):  # trials beyond it queue: a warning
        return []
    if isinstance(workload, DistributedTrainingWorkload):
        field, value = "workers", workload.workers
        consequence = ("JobSet does not gang-schedule, so the pods that start would hold their GPUs while the "
                       "others stay Pending and the job never runs")
        fix = f"use {fit} or fewer GPU pods (chief, workers, evaluator), or fewer GPUs per worker"
    elif isinstance(workload, ModelServiceWorkload):
        field = ["autoscale", "maxReplicas"] if workload.autoscale else "replicas"
        value = workload.max_pods
        consequence = "the pods beyond that would stay Pending, and a rollout's extra pod could never start"
        fix = (f"use {fit - 1} or fewer replicas (a rollout starts one pod more)" if fit > 1
               else "a rollout starts one pod more than the replicas, so the pools must hold 2 or more")
    else:  # one pod: only a platform whose pools of that type have no nodes at their max size
        field, value = "gpus", gpus
        consequence = "the pod would stay Pending"
        fix = "use another GPU type"
    return [ConfigProblem(
        format_path(TEAM_KEY, ["workloads", i, *([field] if isinstance(field, str) else field)]),
        f"{workload_ref(workload)} runs {pods} pods of {gpus} {gpu_type} GPU(s) at once, but the {gpu_type} pools "
        f"of {team.platform_stack} hold at most {fit} such pods at their max size; {consequence}",
        f"{fix}, or ask the platform team to raise the max of the {gpu_type} pools",
        display_value(value),
    )]


@dataclass(frozen=True)
class _Usage:
    """One quota'd resource: what each workload can hold at once, the quota, how to print amounts."""

    resource: str  # as the message names it
    quota_path: str  # the platform config key that sets the quota
    per_workload: dict[str, int]
    quota: int
    show: Callable[[int], str]
    fix: str

    @property
    def total(self) -> int:
        return sum(self.per_workload.values())


def _usages(team: TeamSpec, tenancy: TeamTenancy) -> list[_Usage]:
    gpus = {w.name: concurrent_gpus(w) for w in team.workloads}
    usages = [_Usage("GPUs", "gpuQuota", gpus, tenancy.gpu_quota, str,
                     "lower gpus, replicas, parallelism or worker counts")]
    quotas = tenancy.quotas
    if quotas is None:
        return usages
    cpu_memory = {w.name: concurrent_cpu_memory(w, team.defaults) for w in team.workloads}
    homes = {w.name: quantity_bytes(w.home_size) for w in team.workloads if isinstance(w, DevEnvironmentWorkload)}
    return usages + [
        _Usage("CPUs", "cpuQuota", {n: c for n, (c, _) in cpu_memory.items()}, cpu_millis(quotas.cpu), _cores,
               "lower cpu, replicas, parallelism or worker counts"),
        _Usage("memory", "memoryQuota", {n: m for n, (_, m) in cpu_memory.items()}, quantity_bytes(quotas.memory),
               _gibibytes, "lower memory, replicas, parallelism or worker counts"),
        _Usage("storage for the team's own claims", "storageQuota", homes, quotas.storage_bytes, _gibibytes,
               "lower devEnvironment homeSize"),
        _Usage("LoadBalancer Services", "loadBalancers", {w.name: load_balancers(w) for w in team.workloads},
               quotas.load_balancers, str, "expose fewer workloads through a load balancer (port-forward or expose: cluster)"),
    ]


def _cores(millis: int) -> str:
    return f"{millis / 1000:g}"


def _gibibytes(size: int) -> str:
    return f"{size / 2**30:g}Gi"


def _quota_problems(team: TeamSpec, platform: PlatformView) -> list[ConfigProblem]:
    tenancy = platform.teams.get(team.name)
    if tenancy is None:
        return []  # reported above
    problems = []
    for usage in _usages(team, tenancy):
        if usage.total <= usage.quota:
            continue
        uses = ", ".join(f"{name} {usage.show(n)}" for name, n in usage.per_workload.items() if n)
        problems.append(ConfigProblem(
            f"{TEAM_KEY}.workloads",
            f"can hold {usage.show(usage.total)} {usage.resource} at once ({uses}), more than the team's quota of "
            f"{usage.show(usage.quota)}; the namespace's ResourceQuota would refuse what goes beyond it",
            f"{usage.fix}, or ask the platform team to raise the quota "
            f"(cloudml:platform.teams.{team.name}.{usage.quota_path})",
            usage.show(usage.total),  # a number (with its unit), not a config string: unquoted
        ))
    return problems


def team_platform_warnings(team: TeamSpec, platform: PlatformView) -> list[str]:
    """Allowed, but worth a look: the stack can use nearly all of one of the team's quotas, or a
    sweep runs more trials at once than its pools can ever hold (the rest only queue)."""
    warnings = []
    for i, workload in enumerate(team.workloads):
        gpus = requested_gpus(workload)
        gpu_type = workload.gpu_type or team.defaults.gpu_type
        if not isinstance(workload, SweepWorkload) or gpus == 0 or not 0 < gpus <= platform.gpus_per_node(gpu_type):
            continue
        fit = platform.pods_that_fit(gpu_type, gpus)
        if workload.parallelism > fit:
            warnings.append(
                f"{format_path(TEAM_KEY, ['workloads', i, 'parallelism'])}: {workload_ref(workload)} runs "
                f"{workload.parallelism} trials of {gpus} {gpu_type} GPU(s) at once, but the {gpu_type} pools of "
                f"{team.platform_stack} hold at most {fit} at their max size; the others wait as Pending pods "
                f"(set parallelism to {fit} or less, or ask the platform team to raise the max of the {gpu_type} pools)"
            )
    tenancy = platform.teams.get(team.name)
    if tenancy is None:
        return warnings
    return warnings + [
        f"{TEAM_KEY}.workloads: can hold {usage.show(usage.total)} of the team's {usage.show(usage.quota)} "
        f"{usage.resource} at once; runs started by hand or other stacks of the team may wait for {usage.resource}"
        for usage in _usages(team, tenancy)
        if 0 < usage.total <= usage.quota and usage.total >= QUOTA_WARNING_SHARE * usage.quota
    ]


def _exposure_problems(team: TeamSpec, platform: PlatformView) -> list[ConfigProblem]:
    problems = []
    offer = platform.load_balancing
    for i, workload in enumerate(team.workloads):
        if isinstance(workload, ModelServiceWorkload) and workload.expose == "internet":
            if not offer.allow_internet_facing:
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, ["workloads", i, "expose"]),
                    f"{workload_ref(workload)} asks for an internet-facing load balancer, which platform stack "
                    f"{team.platform_stack} does not allow",
                    "use expose: internal (reachable in the VPC), or ask the platform team to set "
                    "cloudml:platform.loadBalancing.allowInternetFacing",
                    display_value(workload.expose),
                ))
            else:
                allowed = [IPv4Network(c) for c in offer.internet_facing_cidrs]
                for j, cidr in enumerate(workload.source_cidrs):
                    if not any(cidr.subnet_of(a) for a in allowed):
                        problems.append(ConfigProblem(
                            format_path(TEAM_KEY, ["workloads", i, "sourceCidrs", j]),
                            f"{workload_ref(workload)} is outside the CIDRs the platform lets internet-facing load "
                            "balancers accept",
                            f"use CIDRs inside {', '.join(offer.internet_facing_cidrs)}",
                            display_value(str(cidr)),
                        ))
        if isinstance(workload, ModelServiceWorkload) and workload.autoscale and not platform.prometheus_url:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "autoscale"]),
                f"{workload_ref(workload)} needs Prometheus, and platform stack {team.platform_stack} exports no "
                "prometheusUrl (monitoring is not deployed)",
                "use a fixed replicas count until the platform runs monitoring",
            ))
    return problems


def _storage_problems(team: TeamSpec, platform: PlatformView) -> list[ConfigProblem]:
    problems = []
    tenancy = platform.teams.get(team.name)
    offered = tenancy.volumes if tenancy else {}
    for i, workload in enumerate(team.workloads):
        for j, mount in enumerate(workload.volumes):
            if tenancy is not None and mount.source not in offered:
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, ["workloads", i, "volumes", j, "source"]),
                    f"{workload_ref(workload)} is a volume platform stack {team.platform_stack} does not provide"
                    + (" (its sharedFilesystem is none)" if mount.source == SHARED_VOLUME else ""),
                    f"use one of: {', '.join(sorted(offered)) or 'none'}",
                    display_value(mount.source),
                ))
        needed = KIND_VOLUMES.get(workload.kind)
        if tenancy is not None and needed and needed not in offered:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "kind"]),
                f"{workload_ref(workload)} reads the team's {needed} bucket through the platform's `{needed}` "
                "volume, which platform stack "
                f"{team.platform_stack} does not provide",
                "run `pulumi up` on the platform stack with this version of cloudml first",
                display_value(workload.kind),
            ))
        if isinstance(workload, DevEnvironmentWorkload) and not platform.shared_storage_class:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "kind"]),
                f"{workload_ref(workload)} needs a persistent home volume, and platform stack {team.platform_stack} "
                "has no shared file system",
                "ask the platform team to set cloudml:platform.storage.sharedFilesystem: efs",
                display_value(workload.kind),
            ))
    return problems
