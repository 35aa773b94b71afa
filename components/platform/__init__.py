"""The platform stack's component: `Platform` builds the cluster a company's ML teams share."""

from __future__ import annotations

import pulumi
from pydantic.alias_generators import to_camel

from components.platform.cluster import Cluster
from components.platform.network import Network
from components.platform.node_pools import NodePools
from components.platform.tenancy import Tenancy
from components.spec import PLATFORM_KEY, PlatformSpec


def gpu_pool_offers(spec: PlatformSpec) -> dict[str, dict]:
    """The `gpuPools` output: what each GPU pool offers to team stacks."""
    return {
        pool.name: {
            "gpuType": pool.gpu_type,
            "gpusPerNode": pool.schedulable_gpus_per_node,
            "maxNodes": pool.max,
            "capacity": pool.capacity,
        }
        for pool in spec.gpu_pools
    }


class Platform(pulumi.ComponentResource):
    """Creates `<name>-network`, `<name>-cluster`, `<name>-nodes` and `<name>-tenancy`.

    Outputs (exported by the program for team stacks): `cluster_name`, `kubeconfig` (secret),
    `teams`, `gpu_pools`.
    """

    def __init__(self, name: str, spec: PlatformSpec, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(f"{name}-network", spec.network, spec.name, opts=child)
        self.cluster = Cluster(f"{name}-cluster", spec, self.network.private_subnet_ids, region, opts=child)
        self.nodes = NodePools(f"{name}-nodes", spec, self.cluster.cluster_name, self.network.private_subnet_ids, opts=child)
        self.tenancy = Tenancy(f"{name}-tenancy", spec, self.cluster.provider, self.cluster.admin_access, opts=child)
        self.cluster_name = self.cluster.cluster_name
        self.kubeconfig = self.cluster.kubeconfig
        self.teams = self.tenancy.teams
        self.gpu_pools = gpu_pool_offers(spec)
        for warning in not_yet_deployed(spec):
            pulumi.log.warn(warning, resource=self)
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "kubeconfig": self.kubeconfig,
            "teams": self.teams,
            "gpu_pools": self.gpu_pools,
        })


# Sections of the contract that this version validates but does not deploy yet. Their defaults
# would suggest they exist (e.g. sharedFilesystem: efs), so the plan and `pulumi up` always warn.
_NOT_YET_DEPLOYED = {
    "storage": "S3 buckets, EFS, Mountpoint for S3 and FSx for Lustre",
    "load_balancing": "the AWS Load Balancer Controller",
    "monitoring": "the monitoring stack and alert routing",
}


def not_yet_deployed(spec: PlatformSpec) -> list[str]:
    """Warnings for config this version accepts but does not act on yet."""
    warnings = [
        f"{PLATFORM_KEY}.{to_camel(key)} is validated but not deployed by this version of cloudml ({what})"
        for key, what in _NOT_YET_DEPLOYED.items()
    ]
    for i, pool in enumerate(spec.gpu_pools):
        if pool.time_slicing_replicas > 1:
            warnings.append(
                f"{PLATFORM_KEY}.gpuPools[{i}].timeSlicingReplicas is validated but not deployed by this version "
                "of cloudml (device-plugin time-slicing); teams are offered the time-sliced GPU count"
            )
    for team, tenant in spec.teams.items():
        if tenant.admins:
            warnings.append(
                f"{PLATFORM_KEY}.teams.{team}.admins is validated but not deployed by this version of cloudml "
                "(access entries and namespace RBAC)"
            )
    return warnings
