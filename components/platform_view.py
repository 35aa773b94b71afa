"""What a team stack reads from its platform stack's outputs (the cross-stack contract).

The platform exports these outputs; a team stack reads them through a StackReference, offline
(`cloudml plan`, from the planned platform) and online (`pulumi up`) alike. `team_platform_problems`
checks a team's workloads against them: the team exists, its GPU types are offered by a pool, and
each pod fits on one node of such a pool.
"""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from components.errors import ConfigError, ConfigProblem, display_value, format_path
from components.spec import TEAM_KEY, TeamSpec, requested_gpus

# Stack output names; the platform exports them, the team reads them.
OUTPUT_CLUSTER_NAME = "clusterName"
OUTPUT_KUBECONFIG = "kubeconfig"
OUTPUT_TEAMS = "teams"
OUTPUT_GPU_POOLS = "gpuPools"


class _Output(BaseModel):
    # Outputs may gain fields in newer platform versions; a team stack ignores what it does not use.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TeamTenancy(_Output):
    """The namespace and identity the platform made for one team."""

    namespace: str
    service_account: str = Field(alias="serviceAccount")
    gpu_quota: int = Field(alias="gpuQuota")


class GpuPoolOffer(_Output):
    """One GPU pool as teams see it."""

    gpu_type: str = Field(alias="gpuType")
    gpus_per_node: int = Field(alias="gpusPerNode")
    max_nodes: int = Field(alias="maxNodes")
    capacity: str


class PlatformView(_Output):
    """The platform outputs a team stack uses."""

    cluster_name: str = Field(alias=OUTPUT_CLUSTER_NAME)
    teams: dict[str, TeamTenancy] = Field(alias=OUTPUT_TEAMS)
    gpu_pools: dict[str, GpuPoolOffer] = Field(alias=OUTPUT_GPU_POOLS)

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


def team_platform_problems(team: TeamSpec, platform: PlatformView) -> list[ConfigProblem]:
    """Cross-stack checks: is the team a tenant, and does every GPU request fit a pool?"""
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
        gpu_type = workload.gpu_type or team.defaults.gpu_type
        field = "gpuType" if workload.gpu_type else None
        path = format_path(TEAM_KEY, ["workloads", i, field] if field else ["defaults", "gpuType"])
        per_node = platform.gpus_per_node(gpu_type)
        if per_node == 0:
            problems.append(ConfigProblem(
                path if field else format_path(TEAM_KEY, ["workloads", i]) + " (via defaults.gpuType)",
                f"GPU type {gpu_type} is offered by no GPU pool of {team.platform_stack}",
                f"use one of: {', '.join(offered) or 'none (the platform has no GPU pools)'}",
                display_value(gpu_type),
            ))
        elif gpus > per_node:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "gpusPerWorker" if workload.kind == "distributedTraining" else "gpus"]),
                f"asks for {gpus} GPUs in one pod, but the largest {gpu_type} node has {per_node}",
                f"request {per_node} or fewer GPUs per pod, or add a pool with larger {gpu_type} nodes to the platform",
                display_value(gpus),
            ))
    return problems
