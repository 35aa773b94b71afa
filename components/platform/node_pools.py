"""Node pools: the system pool and one EKS managed node group per GPU pool, each on its own launch
template, plus the Cluster Autoscaler's scale-from-zero tags on every GPU group's Auto Scaling group.

Security defaults of every node (the launch template): IMDSv2 only with a hop limit of 1, so a pod
(one network hop away from the host) cannot fetch the node role's credentials; pods get AWS access
through IRSA instead. Encrypted gp3 root volume deleted with the instance. No public IP: the template
has no network interface block (EKS forbids a subnet there and would drop the cluster security group
if one carried groups); the node groups only use private subnets, which never map public IPs.

The pure functions (`gpu_pool_labels`, `autoscaler_node_template_tags`, ...) hold the contract the
Cluster Autoscaler, the NVIDIA device plugin and the workloads agree on; tests pin them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.labels import (
    DEVICE_PLUGIN_CONFIG_LABEL,
    GPU_PRESENT_LABEL,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    GPU_TAINT_VALUE,
    GPU_TYPE_LABEL,
    POOL_LABEL,
)
from components.platform.cluster import assume_role_policy
from components.spec import GpuPoolSpec, PlatformSpec

# Least privilege for the node role: what the kubelet needs to join (worker) and pull images (ecr).
# Not AmazonEKS_CNI_Policy: the vpc-cni add-on has its own IRSA role, so ENI management rights are
# not on every node, where any host-network pod could use them. Not AmazonSSMManagedInstanceCore: a shell on GPU nodes is
# a break-glass need, not a default; grant it explicitly to the role when an operator needs it.
NODE_POLICIES = {
    "worker": "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "ecr": "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
}

# Root device of the EKS AL2023 AMIs (standard and NVIDIA): awslabs/amazon-eks-ami templates/al2023.
ROOT_DEVICE = "/dev/xvda"
# A pod's IMDS request crosses one hop more than the host's, so a limit of 1 answers only the host
# (EKS's own default template uses 2 so pods can reach IMDS; cloudml's pods use IRSA instead).
IMDS_HOP_LIMIT = 1

# The Cluster Autoscaler (AWS) treats a node with this label but no `nvidia.com/gpu` yet as not
# ready, so it waits for the device plugin instead of adding more nodes for the same pending pod
# (cluster-autoscaler/cloudprovider/aws: GPULabel; README "Special note on GPU instances").
AUTOSCALER_GPU_LABEL = "k8s.amazonaws.com/accelerator"
# Values the autoscaler knows by name (its availableGPUTypes); other models use `nvidia-<type>`.
_AUTOSCALER_GPU_NAMES = {"t4": "nvidia-tesla-t4", "a100": "nvidia-tesla-a100", "a10g": "nvidia-a10g"}

CA_PREFIX = "k8s.io/cluster-autoscaler"
# The desired size is the Cluster Autoscaler's once the group exists (see NodePools docstring).
DESIRED_SIZE_PATH = "scalingConfig.desiredSize"


def autoscaler_gpu_type(gpu_type: str) -> str:
    """The `k8s.amazonaws.com/accelerator` value for a catalog GPU type."""
    return _AUTOSCALER_GPU_NAMES.get(gpu_type, f"nvidia-{gpu_type}")


def gpu_pool_labels(pool: GpuPoolSpec) -> dict[str, str]:
    """Kubernetes labels of a GPU pool's nodes. With time-slicing, the device plugin picks the
    config named after the pool (one config per pool) by `nvidia.com/device-plugin.config`."""
    labels = {
        POOL_LABEL: pool.name,
        GPU_TYPE_LABEL: pool.gpu_type,
        GPU_PRESENT_LABEL: "true",
        AUTOSCALER_GPU_LABEL: autoscaler_gpu_type(pool.gpu_type),
    }
    if pool.time_slicing_replicas > 1:
        labels[DEVICE_PLUGIN_CONFIG_LABEL] = pool.name
    return labels


def autoscaler_node_template_tags(pool: GpuPoolSpec) -> dict[str, str]:
    """ASG tags that tell the Cluster Autoscaler what a node of this pool offers while the pool
    has no node to copy (scale from zero): its `nvidia.com/gpu`, labels and taint.

    The GPU count is what the node will advertise: with time-slicing (renameByDefault false) the
    device plugin advertises GPUs x replicas as `nvidia.com/gpu`, and team pods request shares of
    that. The physical count would make the autoscaler believe a pod asking for more shares than
    physical GPUs never fits, and never scale the pool up for it.
    The discovery tags (`.../enabled`, `.../<cluster>`) are not here: EKS puts them on every
    managed node group's ASG itself, and a second owner of those keys would delete them on destroy.
    """
    tags = {f"{CA_PREFIX}/node-template/resources/{GPU_RESOURCE}": str(pool.schedulable_gpus_per_node)}
    for key, value in gpu_pool_labels(pool).items():
        tags[f"{CA_PREFIX}/node-template/label/{key}"] = value
    tags[f"{CA_PREFIX}/node-template/taint/{GPU_TAINT_KEY}"] = f"{GPU_TAINT_VALUE}:NoSchedule"
    return tags


def tag_role(key: str) -> str:
    """A short, stable resource-name part for one ASG tag key."""
    template = key.removeprefix(f"{CA_PREFIX}/node-template/")
    return re.sub(r"[^a-z0-9]+", "-", template.lower()).strip("-")


def instance_tags(cluster: str, pool: str) -> dict[str, str]:
    """Tags every instance and root volume of a pool carries (cost and ownership by pool)."""
    return {"Name": f"{cluster}-{pool}", "cloudml.io/cluster": cluster, POOL_LABEL: pool}


class NodePools(pulumi.ComponentResource):
    """Creates `<name>-node-role` with its policy attachments (`-worker`, `-ecr`); for the system
    pool `<name>-system-lt` (launch template) and `<name>-system` (on-demand CPU node group); for
    each GPU pool `<name>-gpu-<pool>-lt`, `<name>-gpu-<pool>` (managed node group, AL2023 NVIDIA
    AMI, GPU labels and taint) and `<name>-gpu-<pool>-ca-<tag>` (Cluster Autoscaler node-template
    tags on the group's ASG).

    Sizes: each group starts at desired = min; after that the Cluster Autoscaler owns the desired
    size (EKS tags every managed group's ASG for its auto-discovery), so `pulumi up` ignores it
    rather than shrink groups under running training jobs (lowering desired does not respect pod
    disruption budgets). Raising `min` above a group's current size therefore needs the desired
    size raised first (EKS rejects min > desired): `aws eks update-nodegroup-config --cluster-name
    <cluster> --nodegroup-name <group> --scaling-config minSize=<old min>,maxSize=<max>,desiredSize=<new min>`,
    then `pulumi up`.

    `node_dependencies`: resources the node groups wait for (e.g. the vpc-cni add-on with its IRSA
    role: the node role has no CNI policy, so nodes are not Ready until the add-on has its own).

    Outputs: `node_role` (the IAM role; `node_role_arn` its ARN), `system`, `gpu_node_groups`
    (pool name -> node group), `all_node_groups` (for depends_on), `launch_templates`
    (`system`/pool name -> launch template), `autoscaler_tags` (pool name -> its ASG tags).
    """

    def __init__(self, name: str, spec: PlatformSpec, cluster_name: pulumi.Input[str], subnet_ids: pulumi.Input,
                 opts: pulumi.ResourceOptions | None = None, *, node_dependencies: Sequence[pulumi.Resource] = ()):
        super().__init__("cloudml:platform:NodePools", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.node_role = aws.iam.Role(f"{name}-node-role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"), opts=child)
        attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-role-{key}", role=self.node_role.name, policy_arn=arn, opts=child)
            for key, arn in NODE_POLICIES.items()
        ]
        self.node_role_arn = self.node_role.arn
        # Nodes need their role's policies (and the CNI) before they join, or they fail to register.
        self._node_opts = pulumi.ResourceOptions(
            parent=self, depends_on=[*attachments, *node_dependencies], ignore_changes=[DESIRED_SIZE_PATH]
        )
        self._name, self._spec, self._cluster_name, self._subnet_ids = name, spec, cluster_name, subnet_ids
        self.launch_templates: dict[str, aws.ec2.LaunchTemplate] = {}

        system = spec.system_pool
        self.system = self._node_group(
            "system", f"{name}-system", system.disk_size_gib,
            ami_type="AL2023_x86_64_STANDARD",
            capacity_type="ON_DEMAND",
            instance_types=[system.instance_type],
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=system.min, max_size=system.max, desired_size=system.min),
            labels={POOL_LABEL: "system"},
        )
        self.gpu_node_groups: dict[str, aws.eks.NodeGroup] = {}
        self.autoscaler_tags: dict[str, list[aws.autoscaling.Tag]] = {}
        for pool in spec.gpu_pools:
            group = self._node_group(
                pool.name, f"{name}-gpu-{pool.name}", pool.disk_size_gib,
                ami_type="AL2023_x86_64_NVIDIA",
                capacity_type="SPOT" if pool.capacity == "spot" else "ON_DEMAND",
                instance_types=list(pool.instance_types),
                scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=pool.min, max_size=pool.max, desired_size=pool.min),
                labels=gpu_pool_labels(pool),
                taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect="NO_SCHEDULE")],
            )
            self.gpu_node_groups[pool.name] = group
            # EKS names the ASG; it is known only once the group exists.
            asg_name = group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
            self.autoscaler_tags[pool.name] = [
                aws.autoscaling.Tag(
                    f"{name}-gpu-{pool.name}-ca-{tag_role(key)}",
                    autoscaling_group_name=asg_name,
                    # On the ASG only: the autoscaler reads them there; instances need none of them.
                    tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                    opts=child,
                )
                for key, value in autoscaler_node_template_tags(pool).items()
            ]
        self.all_node_groups: list[aws.eks.NodeGroup] = [self.system, *self.gpu_node_groups.values()]
        self.register_outputs({
            "node_role": self.node_role_arn,
            "system": self.system.id,
            "gpu_node_groups": {k: v.id for k, v in self.gpu_node_groups.items()},
        })

    def _node_group(self, pool: str, resource_name: str, disk_size_gib: int, **group_args) -> aws.eks.NodeGroup:
        """A launch template for the pool and the managed node group that uses it. Instance types,
        AMI type, capacity, labels and taints stay on the group; disk size moves to the template
        (EKS rejects diskSize together with a launch template)."""
        tags = instance_tags(self._spec.name, pool)
        template = aws.ec2.LaunchTemplate(
            f"{resource_name}-lt",
            description=f"cloudml {self._spec.name} {pool} nodes: IMDSv2 only, encrypted gp3 root volume",
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=IMDS_HOP_LIMIT,
            ),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=disk_size_gib,
                    volume_type="gp3",
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )],
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags) for kind in ("instance", "volume")
            ],
            tags={"cloudml.io/cluster": self._spec.name, POOL_LABEL: pool},
            # Each change becomes the default version, and the group below rolls to it.
            update_default_version=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.launch_templates[pool] = template
        return aws.eks.NodeGroup(
            resource_name,
            cluster_name=self._cluster_name,
            node_role_arn=self.node_role.arn,
            subnet_ids=self._subnet_ids,
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(
                id=template.id, version=template.latest_version.apply(lambda v: str(v)),
            ),
            opts=self._node_opts,
            **group_args,
        )
