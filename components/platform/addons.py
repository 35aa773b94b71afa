"""The cluster add-ons every GPU platform needs, as pinned Helm releases (components/platform/versions.py):

- NVIDIA device plugin (in the privileged `cloudml-system` namespace, on GPU nodes only), with a
  time-slicing config per GPU pool when a pool shares its GPUs;
- Cluster Autoscaler (IRSA, least privilege; spot pools first via the priority expander);
- metrics-server, KEDA, the JobSet controller, and the AWS Load Balancer Controller (IRSA).

The value builders are pure functions of the spec (tests pin them); `Addons` wires them into
releases. Names the releases share with other parts of cloudml (node labels, the taint, the
system namespace) come from components.labels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from components.labels import (
    GPU_PRESENT_LABEL,
    GPU_RESOURCE,
    GPU_TAINT_KEY,
    MANAGED_BY,
    PART_OF,
    POOL_LABEL,
    SYSTEM_NAMESPACE,
)
from components.platform import versions
from components.platform.addon_policies import cluster_autoscaler_policy, lb_controller_policy
from components.platform.irsa import ServiceAccountRole
from components.render import render_template
from components.spec import PlatformSpec

KUBE_SYSTEM = "kube-system"
KEDA_NAMESPACE = "keda"
JOBSET_NAMESPACE = "jobset-system"
AUTOSCALER_SERVICE_ACCOUNT = "cluster-autoscaler"
LB_CONTROLLER_SERVICE_ACCOUNT = "aws-load-balancer-controller"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
# Controllers run on the on-demand system pool (its nodes carry this label; node_pools.py).
SYSTEM_POOL_SELECTOR = {POOL_LABEL: "system"}
# The device plugin's no-sharing config. Longer than a pool name may be (20), so no pool's config
# (named after the pool) can take its place.
DEFAULT_DEVICE_PLUGIN_CONFIG = "cloudml-default-no-sharing"
SPOT_PRIORITY, FALLBACK_PRIORITY = 10, 1
# First installs pull images onto fresh nodes; Helm's default 5 minutes is tight for that.
RELEASE_TIMEOUT_SECONDS = 600


def _labels(platform: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": f"{platform}-{name}",
        "app.kubernetes.io/component": "addons",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def system_namespace_objects(platform: str) -> list[dict]:
    """The privileged system namespace (Pod Security `privileged`) for GPU system DaemonSets."""
    return render_template("platform/system-namespace.yaml.j2", namespace=SYSTEM_NAMESPACE,
                           labels=_labels(platform, SYSTEM_NAMESPACE))


# --- NVIDIA device plugin ------------------------------------------------------------------------


def _plugin_config(replicas: int) -> str:
    """One device-plugin config file (api/config/v1: version, flags, sharing.timeSlicing)."""
    config: dict = {"version": "v1", "flags": {"migStrategy": "none"}}
    if replicas > 1:
        # renameByDefault false: shares keep the name nvidia.com/gpu, so workloads and the GPU
        # ResourceQuota need no change; node_pools.py advertises GPUs x replicas to the autoscaler.
        config["sharing"] = {"timeSlicing": {
            "renameByDefault": False,
            "resources": [{"name": GPU_RESOURCE, "replicas": replicas}],
        }}
    return yaml.safe_dump(config, sort_keys=False)


def device_plugin_configs(spec: PlatformSpec) -> dict[str, str] | None:
    """The chart's `config.map` (config name -> file), or None when no pool time-slices.

    A node picks the config named by its `nvidia.com/device-plugin.config` label (the pool name);
    unlabelled GPU nodes get the no-sharing default. Every GPU pool has an entry, not only the
    time-sliced ones: a node whose label names a missing config fails the plugin's config-manager.
    """
    if not any(pool.time_slicing_replicas > 1 for pool in spec.gpu_pools):
        return None
    configs = {pool.name: _plugin_config(pool.time_slicing_replicas) for pool in spec.gpu_pools}
    configs[DEFAULT_DEVICE_PLUGIN_CONFIG] = _plugin_config(1)
    return configs


def device_plugin_values(spec: PlatformSpec) -> dict:
    """Values of the nvidia-device-plugin chart: GPU nodes only, and time-slicing configs."""
    values: dict = {
        # Only nodes that have GPUs (node_pools.py labels them); the chart's default affinity
        # (NFD labels or nvidia.com/gpu.present) still applies on top.
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        # GPU nodes are tainted nvidia.com/gpu=true:NoSchedule; the plugin must run there anyway.
        "tolerations": [
            {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"},
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
        ],
    }
    configs = device_plugin_configs(spec)
    if configs is not None:
        # `map` (not `name`): the chart builds the ConfigMap itself; `default` names the config
        # of nodes without the label. The chart's config-manager watches the node label
        # `nvidia.com/device-plugin.config` (labels.DEVICE_PLUGIN_CONFIG_LABEL), fixed in its template.
        values["config"] = {"map": configs, "default": DEFAULT_DEVICE_PLUGIN_CONFIG}
    return values


# --- Cluster Autoscaler --------------------------------------------------------------------------


def go_duration(seconds: int) -> str:
    """Seconds as a Go duration flag value: 600 -> "10m", 5400 -> "1h30m", 45 -> "45s"."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


def gpu_node_group_prefix(platform: str, pool: str) -> str:
    """The start of a GPU pool's EKS node group name: NodePools `<platform>-nodes` names each group
    `<platform>-nodes-gpu-<pool>`, and Pulumi autonames it with `-` and 7 hex characters."""
    return f"{platform}-nodes-gpu-{pool}"


def node_group_regex(platform: str, pool: str) -> str:
    """A regex matching the pool's node group as the autoscaler sees it: the ASG EKS creates for a
    managed node group is named `eks-<node group name>-<uuid>`. The 7-hex suffix keeps pool `l4`
    from matching pool `l4-spot`."""
    prefix = gpu_node_group_prefix(platform, pool)
    if not re.fullmatch(r"[a-z0-9-]+", prefix):  # DNS labels: nothing to escape
        raise ValueError(f"node group prefix {prefix!r} is not a DNS-1123 name")
    return f".*{prefix}-[0-9a-f]{{7}}.*"


def spot_priorities(spec: PlatformSpec) -> dict[int, list[str]] | None:
    """The priority expander's priorities (spot pools first, everything else after), or None when
    spot is not preferred or there is no spot pool."""
    spot = [pool.name for pool in spec.gpu_pools if pool.capacity == "spot"]
    if not spec.autoscaling.prefer_spot or not spot:
        return None
    # The catch-all keeps the other groups eligible: the expander drops groups no regex matches.
    return {SPOT_PRIORITY: [node_group_regex(spec.name, pool) for pool in spot], FALLBACK_PRIORITY: [".*"]}


def autoscaler_expander(spec: PlatformSpec) -> str:
    """`priority` then `least-waste` among equal priorities (CA >= 1.23 chains expanders), or just
    `least-waste` (the group that leaves the least idle CPU/memory) without spot preference."""
    return "priority,least-waste" if spot_priorities(spec) else "least-waste"


def priority_expander_objects(spec: PlatformSpec) -> list[dict]:
    """The `cluster-autoscaler-priority-expander` ConfigMap, or nothing without spot preference."""
    priorities = spot_priorities(spec)
    if priorities is None:
        return []
    return render_template(
        "platform/autoscaler-priority-expander.yaml.j2",
        namespace=KUBE_SYSTEM,
        labels=_labels(spec.name, "cluster-autoscaler-priority-expander"),
        priorities=yaml.safe_dump(priorities, sort_keys=False),
    )


def autoscaler_values(spec: PlatformSpec, cluster_name: pulumi.Input[str], region: str,
                      role_arn: pulumi.Input[str]) -> dict:
    """Values of the cluster-autoscaler chart."""
    return {
        "cloudProvider": "aws",
        # Nodes allow IMDS to the host only (hop limit 1): the region must come from here.
        "awsRegion": region,
        # Discovers ASGs tagged k8s.io/cluster-autoscaler/enabled and .../<cluster> (EKS sets both).
        "autoDiscovery": {"clusterName": cluster_name},
        "fullnameOverride": "cluster-autoscaler",
        "rbac": {"serviceAccount": {
            "create": True,
            "name": AUTOSCALER_SERVICE_ACCOUNT,  # the IRSA role trusts exactly this account
            "annotations": {IRSA_ANNOTATION: role_arn},
        }},
        "extraArgs": {
            # Grow the groups of one pool evenly across AZs.
            "balance-similar-node-groups": True,
            # Nodes running DaemonSet/kube-system pods (every node) may still be scaled down.
            "skip-nodes-with-system-pods": False,
            "scale-down-unneeded-time": go_duration(spec.autoscaling.scale_down_unneeded),
            "expander": autoscaler_expander(spec),
        },
        "nodeSelector": SYSTEM_POOL_SELECTOR,
    }


# --- other controllers ---------------------------------------------------------------------------


def lb_controller_values(cluster_name: pulumi.Input[str], region: str, vpc_id: pulumi.Input[str],
                         role_arn: pulumi.Input[str]) -> dict:
    """Values of the aws-load-balancer-controller chart. Region and VPC are given explicitly: with
    IMDS closed to pods the controller cannot look them up."""
    return {
        "clusterName": cluster_name,
        "region": region,
        "vpcId": vpc_id,
        # No WAF or Shield on cloudml's load balancers: the IRSA policy does not grant their writes
        # (addon_policies.harden_lb_controller_policy), so the controller must not try them.
        "enableShield": False,
        "enableWaf": False,
        "enableWafv2": False,
        "serviceAccount": {
            "create": True,
            "name": LB_CONTROLLER_SERVICE_ACCOUNT,
            "annotations": {IRSA_ANNOTATION: role_arn},
        },
        "nodeSelector": SYSTEM_POOL_SELECTOR,
    }


def metrics_server_values() -> dict:
    return {"nodeSelector": SYSTEM_POOL_SELECTOR}


def keda_values() -> dict:
    return {"nodeSelector": SYSTEM_POOL_SELECTOR}


def jobset_values() -> dict:
    # No ServiceMonitor: the Prometheus Operator CRDs are the monitoring stack's, not installed here.
    return {"controller": {"nodeSelector": SYSTEM_POOL_SELECTOR}, "prometheus": {"enable": False}}


# --- the component -------------------------------------------------------------------------------


class Addons(pulumi.ComponentResource):
    """Creates `<name>-system-namespace` (ConfigGroup: the privileged `cloudml-system` namespace),
    `<name>-device-plugin` (NVIDIA device plugin), `<name>-ca-irsa` (IRSA role of
    kube-system/cluster-autoscaler), `<name>-autoscaler-priority` (ConfigGroup: the priority
    expander ConfigMap; only with spot preference and a spot pool, else None),
    `<name>-cluster-autoscaler`, `<name>-metrics-server`, `<name>-keda`, `<name>-jobset`,
    `<name>-lbc-irsa` (IRSA role of kube-system/aws-load-balancer-controller) and
    `<name>-lb-controller`: Helm releases pinned in versions.py.

    Every child waits for `after` (the node groups, so pods can schedule, and whatever the
    Kubernetes provider needs to reach the cluster). The LB controller goes last: its Service
    webhook (failurePolicy Fail) would reject the other charts' Services while it is not ready.

    Outputs: `system_namespace`, `device_plugin`, `cluster_autoscaler`, `metrics_server`, `keda`
    (team ScaledObjects depend on it: it installs the CRD), `jobset` (likewise for JobSets),
    `lb_controller`, `autoscaler_role`, `lb_controller_role`.
    """

    def __init__(self, name: str, spec: PlatformSpec, *, provider: k8s.Provider, cluster_name: pulumi.Input[str],
                 region: str, vpc_id: pulumi.Input[str], oidc_provider_arn: pulumi.Input[str],
                 oidc_issuer_url: pulumi.Input[str], after: Sequence[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Addons", name, None, opts)
        after = list(after)

        def k8s_opts(*deps: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider,
                                          depends_on=[*after, *(d for d in deps if d is not None)])

        def release(role: str, release_name: str, chart: versions.HelmChart, namespace: str, values: dict,
                    *deps: pulumi.Resource | None, create_namespace: bool = False) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                f"{name}-{role}",
                name=release_name,  # fixed, not autonamed: chart object names derive from it
                chart=chart.chart,
                version=chart.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo) if chart.repo else None,
                namespace=namespace,
                create_namespace=create_namespace,
                values=values,
                timeout=RELEASE_TIMEOUT_SECONDS,
                max_history=10,
                opts=k8s_opts(*deps),
            )

        self.system_namespace = k8s.yaml.v2.ConfigGroup(
            f"{name}-system-namespace", objs=system_namespace_objects(spec.name), opts=k8s_opts())
        self.device_plugin = release("device-plugin", "nvidia-device-plugin", versions.DEVICE_PLUGIN,
                                     SYSTEM_NAMESPACE, device_plugin_values(spec), self.system_namespace)

        irsa = {"oidc_provider_arn": oidc_provider_arn, "oidc_issuer_url": oidc_issuer_url}
        self.autoscaler_role = ServiceAccountRole(
            f"{name}-ca-irsa", namespace=KUBE_SYSTEM, service_account=AUTOSCALER_SERVICE_ACCOUNT,
            policy=pulumi.Output.from_input(cluster_name).apply(cluster_autoscaler_policy),
            opts=pulumi.ResourceOptions(parent=self), **irsa)
        priority_objects = priority_expander_objects(spec)
        # The autoscaler reads its priorities at start: the ConfigMap must exist first.
        self.autoscaler_priority = k8s.yaml.v2.ConfigGroup(
            f"{name}-autoscaler-priority", objs=priority_objects, opts=k8s_opts()) if priority_objects else None
        autoscaler_chart = versions.for_kubernetes(versions.CLUSTER_AUTOSCALER, spec.kubernetes_version)
        self.cluster_autoscaler = release(
            "cluster-autoscaler", "cluster-autoscaler", autoscaler_chart,
            KUBE_SYSTEM, autoscaler_values(spec, cluster_name, region, self.autoscaler_role.arn),
            self.autoscaler_role, self.autoscaler_priority)

        self.metrics_server = release("metrics-server", "metrics-server", versions.METRICS_SERVER, KUBE_SYSTEM,
                                      metrics_server_values())
        self.keda = release("keda", "keda", versions.for_kubernetes(versions.KEDA, spec.kubernetes_version),
                            KEDA_NAMESPACE, keda_values(), create_namespace=True)
        self.jobset = release("jobset", "jobset", versions.JOBSET, JOBSET_NAMESPACE, jobset_values(),
                              create_namespace=True)

        # The hardened policy names this account, partition and VPC: known only once they are.
        invoke = pulumi.InvokeOptions(parent=self)
        lbc_policy = pulumi.Output.all(aws.get_partition_output(opts=invoke).partition,
                                       aws.get_caller_identity_output(opts=invoke).account_id, vpc_id).apply(
            lambda args: lb_controller_policy(partition=args[0], region=region, account_id=args[1], vpc_id=args[2]))
        self.lb_controller_role = ServiceAccountRole(
            f"{name}-lbc-irsa", namespace=KUBE_SYSTEM, service_account=LB_CONTROLLER_SERVICE_ACCOUNT,
            policy=lbc_policy, opts=pulumi.ResourceOptions(parent=self), **irsa)
        self.lb_controller = release(
            "lb-controller", "aws-load-balancer-controller", versions.LB_CONTROLLER, KUBE_SYSTEM,
            lb_controller_values(cluster_name, region, vpc_id, self.lb_controller_role.arn),
            self.lb_controller_role, self.device_plugin, self.cluster_autoscaler, self.metrics_server,
            self.keda, self.jobset)

        self.register_outputs({
            "autoscaler_role_arn": self.autoscaler_role.arn,
            "lb_controller_role_arn": self.lb_controller_role.arn,
        })
