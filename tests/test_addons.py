"""Cluster add-ons: pinned Helm releases, their security-relevant values, IRSA policies, and the
Kubernetes objects the component renders itself (layers 1-3: pure, under mocks, real schemas)."""

from __future__ import annotations

import copy
import json
import re

import kubernetes_validate
import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml
from conftest import run_components, sample_config

from components.errors import ConfigError
from components.labels import DEVICE_PLUGIN_CONFIG_LABEL, SYSTEM_NAMESPACE
from components.platform import versions
from components.platform.addon_policies import (
    AUTOSCALER_WRITE_ACTIONS,
    cluster_autoscaler_policy,
    harden_lb_controller_policy,
    lb_controller_policy_document,
    policy_actions,
)
from components.platform.addons import (
    DEFAULT_DEVICE_PLUGIN_CONFIG,
    Addons,
    go_duration,
    node_group_regex,
    priority_expander_objects,
    system_namespace_objects,
)
from components.platform.irsa import trust_policy
from components.spec import SUPPORTED_KUBERNETES_VERSIONS, load_platform

NAME = "ml-dev-addons"
PROVIDER_ARN = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"
VPC = "vpc-0123456789abcdef0"
RELEASES = {  # logical name -> (helm release name, pinned chart, namespace, create_namespace)
    f"{NAME}-device-plugin": ("nvidia-device-plugin", versions.DEVICE_PLUGIN, SYSTEM_NAMESPACE, False),
    f"{NAME}-cluster-autoscaler": ("cluster-autoscaler", versions.CLUSTER_AUTOSCALER["1.31"], "kube-system", False),
    f"{NAME}-metrics-server": ("metrics-server", versions.METRICS_SERVER, "kube-system", False),
    f"{NAME}-keda": ("keda", versions.KEDA["1.31"], "keda", True),
    f"{NAME}-jobset": ("jobset", versions.JOBSET, "jobset-system", True),
    f"{NAME}-lb-controller": ("aws-load-balancer-controller", versions.LB_CONTROLLER, "kube-system", False),
}


def platform_raw() -> dict:
    return copy.deepcopy(sample_config("platform-dev")["cloudml:platform"])


def build(raw: dict | None = None) -> tuple[dict[str, dict], dict]:
    """Run Addons for the sample platform (or `raw`) under mocks; return the records and the role ARNs."""
    spec = load_platform(raw or platform_raw())
    arns: dict = {}

    def program():
        # Stands in for the node groups the platform passes as `after`.
        node_groups = aws.iam.Role("node-groups", assume_role_policy="{}")
        provider = k8s.Provider("p", kubeconfig="{}")
        addons = Addons(NAME, spec, provider=provider, cluster_name=pulumi.Output.from_input("ml-dev"),
                        region="us-west-2", vpc_id=pulumi.Output.from_input(VPC), oidc_provider_arn=PROVIDER_ARN,
                        oidc_issuer_url=ISSUER, after=[node_groups])
        addons.autoscaler_role.arn.apply(lambda arn: arns.__setitem__("autoscaler", arn))
        addons.lb_controller_role.arn.apply(lambda arn: arns.__setitem__("lb_controller", arn))
        for attr in ("keda", "jobset", "lb_controller", "device_plugin", "cluster_autoscaler", "metrics_server"):
            assert isinstance(getattr(addons, attr), k8s.helm.v3.Release), attr
        assert isinstance(addons.system_namespace, k8s.yaml.v2.ConfigGroup)

    return run_components(program), arns


@pytest.fixture(scope="module")
def sample():
    return build()


def values(resources: dict, role: str) -> dict:
    return resources[f"{NAME}-{role}"]["inputs"]["values"]


def test_children_are_exactly_these(sample):
    """The sample platform (a spot pool, preferSpot default) gets these children and nothing else."""
    resources, _ = sample
    children = {n: r["type"] for n, r in resources.items() if n.startswith(NAME)}
    assert children == {
        NAME: "cloudml:platform:Addons",
        f"{NAME}-system-namespace": "kubernetes:yaml/v2:ConfigGroup",
        f"{NAME}-autoscaler-priority": "kubernetes:yaml/v2:ConfigGroup",
        **{n: "kubernetes:helm.sh/v3:Release" for n in RELEASES},
        **{f"{NAME}-{irsa}": "cloudml:platform:ServiceAccountRole" for irsa in ("ca-irsa", "lbc-irsa")},
        **{f"{NAME}-{irsa}-role": "aws:iam/role:Role" for irsa in ("ca-irsa", "lbc-irsa")},
        **{f"{NAME}-{irsa}-policy": "aws:iam/rolePolicy:RolePolicy" for irsa in ("ca-irsa", "lbc-irsa")},
    }
    for name, record in resources.items():
        if name.startswith(NAME) and name != NAME:
            irsa = re.match(rf"({NAME}-(ca|lbc)-irsa)-(role|policy)$", name)
            parent = irsa.group(1) if irsa else NAME
            assert record["parent"].endswith(f"::{parent}"), f"{name} is parented to {record['parent']}"


def test_every_release_is_pinned_to_versions_py(sample):
    """Each release installs exactly the chart, version and repository versions.py pins (an exact
    version, no range), under a fixed release name, in its namespace."""
    resources, _ = sample
    for logical, (release_name, chart, namespace, create_namespace) in RELEASES.items():
        inputs = resources[logical]["inputs"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", chart.version), chart
        assert inputs["chart"] == chart.chart and inputs["version"] == chart.version, logical
        if chart.repo is None:  # OCI: the chart reference carries the registry; no repository
            assert inputs["chart"].startswith("oci://") and "repositoryOpts" not in inputs, logical
        else:
            assert inputs["repositoryOpts"] == {"repo": chart.repo}, logical
        assert inputs["name"] == release_name, logical
        assert inputs["namespace"] == namespace and inputs["createNamespace"] is create_namespace, logical


def test_version_tables_cover_every_supported_kubernetes_version():
    """Every Kubernetes version the contract allows has an autoscaler whose app minor equals it,
    and a KEDA release; an unpinned version fails with a message that says where to pin it."""
    assert set(versions.CLUSTER_AUTOSCALER) == set(SUPPORTED_KUBERNETES_VERSIONS)
    assert set(versions.KEDA) == set(SUPPORTED_KUBERNETES_VERSIONS)
    for minor, chart in versions.CLUSTER_AUTOSCALER.items():
        assert chart.app_version.rsplit(".", 1)[0] == minor, chart
    with pytest.raises(ValueError, match="no chart pinned for Kubernetes 1.99.*versions.py"):
        versions.for_kubernetes(versions.CLUSTER_AUTOSCALER, "1.99")


def test_autoscaler_follows_the_cluster_version():
    """A 1.33 cluster gets the 1.33 autoscaler and the KEDA pinned for 1.33."""
    raw = platform_raw()
    raw["kubernetesVersion"] = "1.33"
    resources, _ = build(raw)
    assert resources[f"{NAME}-cluster-autoscaler"]["inputs"]["version"] == versions.CLUSTER_AUTOSCALER["1.33"].version
    assert resources[f"{NAME}-keda"]["inputs"]["version"] == versions.KEDA["1.33"].version


def test_every_kubernetes_child_waits_for_after_and_uses_the_provider(sample):
    """Nothing is installed before the node groups exist (pods could not schedule), and every
    Kubernetes object goes through the cluster's provider."""
    resources, _ = sample
    kubernetes_children = [n for n, r in resources.items() if r["type"].startswith("kubernetes:")]
    assert len(kubernetes_children) == len(RELEASES) + 2  # + the two ConfigGroups
    for name in kubernetes_children:
        record = resources[name]
        assert any(dep.endswith("::node-groups") for dep in record["dependsOn"]), name
        assert "pulumi:providers:kubernetes::p::" in record["provider"], name


def test_lb_controller_is_installed_last(sample):
    """The LB controller's Service webhook rejects Services while it is not ready, so every other
    release (and its IRSA role) is installed before it."""
    resources, _ = sample
    deps = resources[f"{NAME}-lb-controller"]["dependsOn"]
    for other in set(RELEASES) - {f"{NAME}-lb-controller"}:
        assert any(d.endswith(f"::{other}") for d in deps), other
    assert any(d.endswith(f"::{NAME}-lbc-irsa-policy") for d in deps)


def test_device_plugin_runs_only_on_gpu_nodes_in_the_privileged_namespace(sample):
    """The device plugin selects GPU nodes, tolerates their taint, runs in cloudml-system after the
    namespace exists, and has no sharing config when no pool time-slices (the sample)."""
    resources, _ = sample
    record = resources[f"{NAME}-device-plugin"]
    plugin = record["inputs"]["values"]
    assert plugin["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in plugin["tolerations"]
    assert "config" not in plugin
    assert any(d.endswith(f"::{NAME}-system-namespace") for d in record["dependsOn"])


def test_time_slicing_gives_each_pool_its_config():
    """With a time-sliced pool, config.map has one config per pool (named after it: the value of the
    node label the pools set) plus a no-sharing default; only the sliced pool shares its GPUs."""
    raw = platform_raw()
    raw["gpuPools"][0]["timeSlicingReplicas"] = 4
    resources, _ = build(raw)
    config = values(resources, "device-plugin")["config"]
    assert set(config) == {"map", "default"}  # never `name` too: the chart rejects both
    assert config["default"] == DEFAULT_DEVICE_PLUGIN_CONFIG
    assert set(config["map"]) == {"a10g", "l4-spot", DEFAULT_DEVICE_PLUGIN_CONFIG}
    sliced = yaml.safe_load(config["map"]["a10g"])
    assert sliced == {
        "version": "v1",
        "flags": {"migStrategy": "none"},
        "sharing": {"timeSlicing": {"renameByDefault": False, "resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}},
    }
    for unshared in ("l4-spot", DEFAULT_DEVICE_PLUGIN_CONFIG):
        assert yaml.safe_load(config["map"][unshared]) == {"version": "v1", "flags": {"migStrategy": "none"}}
    assert DEVICE_PLUGIN_CONFIG_LABEL == "nvidia.com/device-plugin.config"  # the label the chart watches


def test_default_device_plugin_config_cannot_be_a_pool_name():
    """No pool can be named like the default config (its config would replace the default)."""
    raw = platform_raw()
    raw["gpuPools"][0]["name"] = DEFAULT_DEVICE_PLUGIN_CONFIG
    with pytest.raises(ConfigError):
        load_platform(raw)


def test_autoscaler_values_and_irsa(sample):
    """The autoscaler discovers this cluster's groups, balances them, may remove nodes with system
    pods, scales down after scaleDownUnneeded, prefers spot, runs on the system pool, and its
    service account carries the role that only kube-system/cluster-autoscaler can assume."""
    resources, arns = sample
    ca = values(resources, "cluster-autoscaler")
    assert ca["autoDiscovery"] == {"clusterName": "ml-dev"}
    assert ca["awsRegion"] == "us-west-2" and ca["cloudProvider"] == "aws"
    assert ca["extraArgs"] == {
        "balance-similar-node-groups": True,
        "skip-nodes-with-system-pods": False,
        "scale-down-unneeded-time": "10m",
        "expander": "priority,least-waste",
    }
    assert ca["nodeSelector"] == {"cloudml.io/pool": "system"}
    account = ca["rbac"]["serviceAccount"]
    assert account["create"] is True and account["name"] == "cluster-autoscaler"
    assert account["annotations"] == {"eks.amazonaws.com/role-arn": arns["autoscaler"]}
    role = resources[f"{NAME}-ca-irsa-role"]["inputs"]
    expected_trust = trust_policy(PROVIDER_ARN, ISSUER, "kube-system", "cluster-autoscaler")
    assert json.loads(role["assumeRolePolicy"]) == json.loads(expected_trust)
    assert any(d.endswith(f"::{NAME}-autoscaler-priority") for d in resources[f"{NAME}-cluster-autoscaler"]["dependsOn"])


def test_priority_configmap_puts_spot_pools_first(sample):
    """The priority ConfigMap (read by the autoscaler by name, in kube-system) ranks the spot pool's
    node group above everything else; its regex matches that pool's ASG and not the other pool's."""
    resources, _ = sample
    [configmap] = resources[f"{NAME}-autoscaler-priority"]["inputs"]["objs"]
    assert configmap["metadata"]["name"] == "cluster-autoscaler-priority-expander"
    assert configmap["metadata"]["namespace"] == "kube-system"
    priorities = yaml.safe_load(configmap["data"]["priorities"])
    assert priorities == {10: [node_group_regex("ml-dev", "l4-spot")], 1: [".*"]}
    [spot] = priorities[10]
    # ASG of an EKS managed node group: eks-<node group name>-<uuid>; the group name is autonamed.
    assert re.search(spot, "eks-ml-dev-nodes-gpu-l4-spot-3f9a1c2-62c9b8a2-1f0e-4c3b-9d2a-0b1c2d3e4f50")
    assert not re.search(spot, "eks-ml-dev-nodes-gpu-a10g-7d41e0b-62c9b8a2-1f0e-4c3b-9d2a-0b1c2d3e4f50")
    assert not re.search(node_group_regex("ml-dev", "l4"), "eks-ml-dev-nodes-gpu-l4-spot-3f9a1c2-62c9b8a2")


@pytest.mark.parametrize("change", ["preferSpot false", "no spot pool"])
def test_without_spot_preference_the_autoscaler_uses_least_waste(change):
    """No spot preference (or no spot pool): least-waste, and no priority ConfigMap at all."""
    raw = platform_raw()
    if change == "preferSpot false":
        raw["autoscaling"] = {"preferSpot": False}
    else:
        raw["gpuPools"][1]["capacity"] = "on-demand"
    resources, _ = build(raw)
    assert values(resources, "cluster-autoscaler")["extraArgs"]["expander"] == "least-waste"
    assert f"{NAME}-autoscaler-priority" not in resources
    assert priority_expander_objects(load_platform(raw)) == []


def test_autoscaler_policy_writes_only_to_this_clusters_groups(sample):
    """Describe* on *, but resizing and terminating only ASGs EKS tagged as this cluster's."""
    resources, _ = sample
    policy = json.loads(resources[f"{NAME}-ca-irsa-policy"]["inputs"]["policy"])
    assert policy == json.loads(cluster_autoscaler_policy("ml-dev"))
    describe, write = policy["Statement"]
    assert all(":Describe" in a or ":Get" in a for a in describe["Action"]) and "Condition" not in describe
    assert write["Action"] == AUTOSCALER_WRITE_ACTIONS
    assert write["Condition"] == {"StringEquals": {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
        "aws:ResourceTag/k8s.io/cluster-autoscaler/ml-dev": "owned",
    }}
    assert not any("*" in a for s in policy["Statement"] for a in s["Action"])  # no wildcard actions


def test_lb_controller_policy_is_the_official_one_and_wired(sample):
    """The LB controller's role holds the controller's own policy (loaded from data/: it parses and
    grants what v2.12 calls), hardened for this account, region and VPC (tests/test_lb_controller_policy.py),
    only its service account can assume it, and the chart gets the cluster, region, VPC, the
    annotated service account, and WAF/Shield off (their writes are not granted)."""
    resources, arns = sample
    document = lb_controller_policy_document()
    actions = policy_actions(document)
    assert {
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DescribeListenerAttributes",  # needed since controller v2.8
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "wafv2:AssociateWebACL",
    } <= actions
    assert json.loads(resources[f"{NAME}-lbc-irsa-policy"]["inputs"]["policy"]) == harden_lb_controller_policy(
        document, partition="aws", region="us-west-2", account_id="111122223333", vpc_id=VPC)
    role = resources[f"{NAME}-lbc-irsa-role"]["inputs"]
    assert json.loads(role["assumeRolePolicy"]) == json.loads(
        trust_policy(PROVIDER_ARN, ISSUER, "kube-system", "aws-load-balancer-controller"))
    lbc = values(resources, "lb-controller")
    assert (lbc["clusterName"], lbc["region"], lbc["vpcId"]) == ("ml-dev", "us-west-2", VPC)
    assert (lbc["enableShield"], lbc["enableWaf"], lbc["enableWafv2"]) == (False, False, False)
    assert lbc["serviceAccount"] == {
        "create": True,
        "name": "aws-load-balancer-controller",
        "annotations": {"eks.amazonaws.com/role-arn": arns["lb_controller"]},
    }


def test_controllers_run_on_the_system_pool(sample):
    """Every controller selects the on-demand system pool (spot GPU nodes can vanish under it)."""
    resources, _ = sample
    system = {"cloudml.io/pool": "system"}
    for role in ("cluster-autoscaler", "metrics-server", "keda", "lb-controller"):
        assert values(resources, role)["nodeSelector"] == system, role
    assert values(resources, "jobset")["controller"]["nodeSelector"] == system
    assert values(resources, "jobset")["prometheus"] == {"enable": False}


def test_system_namespace_is_privileged(sample):
    """cloudml-system enforces Pod Security `privileged` (the device plugin needs host paths)."""
    resources, _ = sample
    [namespace] = resources[f"{NAME}-system-namespace"]["inputs"]["objs"]
    assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == "cloudml-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespace == system_namespace_objects("ml-dev")[0]


def test_rendered_objects_validate_against_kubernetes_1_31():
    """The namespace and the priority ConfigMap are valid Kubernetes 1.31 objects (strict schema)."""
    spec = load_platform(platform_raw())
    objects = system_namespace_objects(spec.name) + priority_expander_objects(spec)
    assert [o["kind"] for o in objects] == ["Namespace", "ConfigMap"]
    for obj in objects:
        assert kubernetes_validate.validate(obj, "1.31.0", strict=True)


@pytest.mark.parametrize("seconds,flag", [(600, "10m"), (5400, "1h30m"), (45, "45s"), (3661, "1h1m1s")])
def test_go_duration(seconds, flag):
    """scaleDownUnneeded (seconds) becomes a Go duration the autoscaler's flag parser accepts."""
    assert go_duration(seconds) == flag
