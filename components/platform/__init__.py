"""The platform stack's component: `Platform` builds the cluster a company's ML teams share."""

from __future__ import annotations

import pulumi
from pydantic.alias_generators import to_camel

from components.platform.addons import Addons
from components.platform.cluster import Cluster
from components.platform.cluster_addons import ClusterAddons
from components.platform.monitoring import Monitoring
from components.platform.network import Network
from components.platform.node_pools import NodePools
from components.platform.storage import Storage, volume_quota_problems
from components.platform.storage_s3 import bucket_name_problems
from components.platform.tenancy import Tenancy
from components.errors import ConfigProblem
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


def component_problems(spec: PlatformSpec) -> list[ConfigProblem]:
    """Rules the platform's components own (S3's reserved bucket-name prefixes, team claims that must
    fit the storage quota), reported with the contract's own stack-wide rules by `load_platform`."""
    return bucket_name_problems(spec) + volume_quota_problems(spec)


class Platform(pulumi.ComponentResource):
    """Creates `<name>-network`, `<name>-cluster` (control plane, OIDC, vpc-cni, kube-proxy),
    `<name>-nodes` (launch templates, node groups, autoscaler tags), `<name>-cluster-addons` (coredns,
    EBS CSI, gp3 StorageClass), `<name>-storage` (buckets, EFS, Mountpoint for S3, FSx), `<name>-addons`
    (device plugin, Cluster Autoscaler, metrics-server, KEDA, JobSet, LB controller),
    `<name>-monitoring` (kube-prometheus-stack, dcgm-exporter, alert rules and dashboards, alert
    routing to SNS, CloudWatch alarms) and `<name>-tenancy` (each team's namespace, quotas,
    policies, identity and admins).

    Outputs (exported by the program for team stacks): `cluster_name`, `kubeconfig` (secret),
    `teams`, `gpu_pools`, `buckets`, `shared_storage_class`, `load_balancing`, `prometheus_url`.
    """

    def __init__(self, name: str, spec: PlatformSpec, region: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Platform", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.network = Network(f"{name}-network", spec.network, spec.name, opts=child)
        subnets = self.network.private_subnet_ids
        self.cluster = Cluster(f"{name}-cluster", spec, subnets, region, opts=child)
        cluster = self.cluster
        self.nodes = NodePools(f"{name}-nodes", spec, cluster.cluster_name, subnets, opts=child,
                               node_dependencies=[*cluster.node_prerequisites, *self.network.egress_ready])
        # Kubernetes objects and in-cluster controllers need a node to run on and the admins' access.
        ready = [self.nodes.system, *cluster.admin_access]
        self.cluster_addons = ClusterAddons(f"{name}-cluster-addons", cluster, after=[self.nodes.system], opts=child)
        irsa = {"oidc_provider_arn": cluster.oidc_provider_arn, "oidc_issuer_url": cluster.oidc_issuer_url}
        self.storage = Storage(
            f"{name}-storage", spec, vpc_id=self.network.vpc_id, vpc_cidr=self.network.vpc_cidr,
            private_subnet_ids=subnets, provider=cluster.provider, cluster_name=cluster.cluster_name,
            after=ready, opts=child, **irsa,
        )
        self.addons = Addons(
            f"{name}-addons", spec, provider=cluster.provider, cluster_name=cluster.cluster_name, region=region,
            vpc_id=self.network.vpc_id, after=[*ready, self.cluster_addons.coredns], opts=child, **irsa,
        )
        # Prometheus needs the gp3 StorageClass for its volume, and node-exporter/dcgm-exporter the
        # privileged system namespace.
        self.monitoring = Monitoring(
            f"{name}-monitoring", spec, provider=cluster.provider, cluster_name=cluster.cluster_name, region=region,
            gpu_node_groups=self.nodes.gpu_node_groups,
            after=[*ready, self.cluster_addons.coredns, self.cluster_addons.storage_classes, self.addons.system_namespace],
            opts=child, **irsa,
        )
        # Team namespaces come after the controllers that clean up what teams create (load balancers,
        # volumes, KEDA finalizers), so on destroy they go first, while those controllers still run.
        # The StorageClass too: a team's `shared` claim is provisioned through it.
        shared = [self.storage.shared.csi_driver, self.storage.shared.storage_classes] if self.storage.shared else []
        controllers = [self.addons.lb_controller, self.addons.keda, self.storage.s3_csi_driver, *shared,
                       *self.nodes.all_node_groups]
        self.tenancy = Tenancy(
            f"{name}-tenancy", spec, cluster.provider, [*cluster.admin_access, *controllers], cluster_name=cluster.cluster_name,
            bucket_arns=self.storage.bucket_arns, bucket_names=self.storage.bucket_names, region=region,
            kms_key_arn=self.storage.kms_key_arn, vpc_cidr=self.network.vpc_cidr, opts=child, **irsa,
        )
        self.cluster_name = cluster.cluster_name
        self.kubeconfig = cluster.kubeconfig
        self.teams = self.tenancy.teams
        self.gpu_pools = gpu_pool_offers(spec)
        self.buckets = self.storage.bucket_names
        self.shared_storage_class = self.storage.storage_class
        self.prometheus_url = self.monitoring.prometheus_url
        self.load_balancing = {
            "allowInternetFacing": spec.load_balancing.allow_internet_facing,
            "internetFacingCidrs": [str(c) for c in spec.load_balancing.internet_facing_cidrs],
        }
        if spec.load_balancing.certificate_arn:
            self.load_balancing["certificateArn"] = spec.load_balancing.certificate_arn
        for warning in not_yet_deployed(spec):
            pulumi.log.warn(warning, resource=self)
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "kubeconfig": self.kubeconfig,
            "teams": self.teams,
            "gpu_pools": self.gpu_pools,
            "buckets": self.buckets,
            "shared_storage_class": self.shared_storage_class,
            "load_balancing": self.load_balancing,
            "prometheus_url": self.prometheus_url,
        })


# Sections of the contract that this version validates but does not deploy yet. Their defaults
# would suggest they exist (e.g. sharedFilesystem: efs), so the plan and `pulumi up` always warn.
_NOT_YET_DEPLOYED: dict[str, str] = {}


def not_yet_deployed(spec: PlatformSpec) -> list[str]:
    """Warnings for config this version accepts but does not act on yet."""
    warnings = [
        f"{PLATFORM_KEY}.{to_camel(key)} is validated but not deployed by this version of cloudml ({what})"
        for key, what in _NOT_YET_DEPLOYED.items()
    ]
    return warnings
