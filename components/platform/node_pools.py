"""Node pools: the system pool and one EKS managed node group per GPU pool.

GPU nodes carry `cloudml.io/pool`, `cloudml.io/gpu-type` and `nvidia.com/gpu.present` labels and the
`nvidia.com/gpu=true:NoSchedule` taint, so only pods that ask for GPUs (and tolerate it) land there.
Foundation scope: launch templates (IMDSv2, encrypted gp3), Cluster Autoscaler scale-from-zero ASG
tags and time-slicing are the platform issue's.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components.platform.cluster import assume_role_policy
from components.labels import GPU_PRESENT_LABEL, GPU_TAINT_KEY, GPU_TYPE_LABEL, POOL_LABEL
from components.spec import GpuPoolSpec, PlatformSpec

NODE_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "ecr": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "cni": "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
}


def gpu_pool_labels(pool: GpuPoolSpec) -> dict[str, str]:
    return {POOL_LABEL: pool.name, GPU_TYPE_LABEL: pool.gpu_type, GPU_PRESENT_LABEL: "true"}


class NodePools(pulumi.ComponentResource):
    """Creates `<name>-node-role` with its managed policies, `<name>-system` (on-demand CPU node
    group) and `<name>-gpu-<pool>` (one managed node group per GPU pool, AL2023 NVIDIA AMI).

    Outputs: `gpu_node_groups` (pool name -> node group).
    """

    def __init__(self, name: str, spec: PlatformSpec, cluster_name: pulumi.Input[str], subnet_ids: pulumi.Input,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:NodePools", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.node_role = aws.iam.Role(f"{name}-node-role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"), opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-role-{key}", role=self.node_role.name, policy_arn=arn, opts=child)
            for key, arn in NODE_POLICIES.items()
        ]
        # Nodes need their role's policies before they join, or they fail to register.
        after_policies = pulumi.ResourceOptions(parent=self, depends_on=attachments)
        system = spec.system_pool
        self.system = aws.eks.NodeGroup(
            f"{name}-system",
            cluster_name=cluster_name,
            node_role_arn=self.node_role.arn,
            subnet_ids=subnet_ids,
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            instance_types=[system.instance_type],
            disk_size=system.disk_size_gib,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=system.min, max_size=system.max, desired_size=system.min),
            labels={POOL_LABEL: "system"},
            opts=after_policies,
        )
        self.gpu_node_groups: dict[str, aws.eks.NodeGroup] = {}
        for pool in spec.gpu_pools:
            self.gpu_node_groups[pool.name] = aws.eks.NodeGroup(
                f"{name}-gpu-{pool.name}",
                cluster_name=cluster_name,
                node_role_arn=self.node_role.arn,
                subnet_ids=subnet_ids,
                ami_type="AL2023_x86_64_NVIDIA",
                capacity_type="SPOT" if pool.capacity == "spot" else "ON_DEMAND",
                instance_types=list(pool.instance_types),
                disk_size=pool.disk_size_gib,
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=pool.min, max_size=pool.max, desired_size=pool.min),
                labels=gpu_pool_labels(pool),
                taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value="true", effect="NO_SCHEDULE")],
                # desired = min: nothing else scales the group in this version (no Cluster Autoscaler),
                # so raising min must raise desired too.
                opts=after_policies,
            )
        self.register_outputs({"gpu_node_groups": {k: v.id for k, v in self.gpu_node_groups.items()}})
