"""The EKS, launch-template and GPU node group rules of the policy pack (policies/rules/cloud_eks.py):
per rule a compliant fixture and minimal mutations with the exact message and fix pinned."""

from __future__ import annotations

import copy

import pytest

from policies.core import PlannedResource, PolicyConfig, evaluate
from test_policy_cloud import RULE, UNKNOWN, found, resource

# --- EKS ------------------------------------------------------------------------------------

CLUSTER_PROPS = {
    "name": "ml-dev", "version": "1.31", "enabledClusterLogTypes": ["api", "audit", "authenticator"],
    "encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-west-2:111122223333:key/k"}, "resources": ["secrets"]},
    "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False, "subnetIds": ["subnet-1"]},
}


def cluster(**changes) -> list[PlannedResource]:
    props = copy.deepcopy(CLUSTER_PROPS)
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    return [resource("aws:eks/cluster:Cluster", "ml-dev-cluster-eks", props)]


@pytest.mark.parametrize("rule", ["eks-endpoint-restricted", "eks-secrets-encrypted", "eks-audit-logs"])
def test_eks_compliant_cluster(rule):
    assert found(rule, cluster()) == []


ENDPOINT = "eks-endpoint-restricted"
ENDPOINT_FIX = ("Set vpcConfig.endpointPublicAccess: false (platform endpoint.publicAccessCidrs: []), or list only your "
                "office/VPN CIDRs in vpcConfig.publicAccessCidrs.")
SECRETS_FIX = 'Set encryptionConfig: {resources: ["secrets"], provider: {keyArn: <a KMS key ARN>}}.'


def test_endpoint_public_with_listed_cidrs_is_compliant():
    vpc = {**CLUSTER_PROPS["vpcConfig"], "endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}
    assert found(ENDPOINT, cluster(vpcConfig=vpc)) == []


def test_endpoint_public_without_cidrs():
    vpc = {**CLUSTER_PROPS["vpcConfig"], "endpointPublicAccess": True}
    assert found(ENDPOINT, cluster(vpcConfig=vpc)) == [("ml-dev-cluster-eks", (
        "vpcConfig.endpointPublicAccess is true and vpcConfig.publicAccessCidrs is not set: "
        "the Kubernetes API is open to 0.0.0.0/0 (AWS's default)"), ENDPOINT_FIX)]


def test_endpoint_public_by_default():
    assert found(ENDPOINT, cluster(vpcConfig={"subnetIds": ["subnet-1"]})) == [("ml-dev-cluster-eks", (
        "vpcConfig.endpointPublicAccess is not set (AWS's default: true) and vpcConfig.publicAccessCidrs is not set: "
        "the Kubernetes API is open to 0.0.0.0/0 (AWS's default)"), ENDPOINT_FIX)]


def test_endpoint_open_to_the_world():
    vpc = {**CLUSTER_PROPS["vpcConfig"], "endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/0"]}
    assert found(ENDPOINT, cluster(vpcConfig=vpc)) == [
        ("ml-dev-cluster-eks", "vpcConfig.publicAccessCidrs[1] is 0.0.0.0/0: the Kubernetes API is open to the whole internet",
         ENDPOINT_FIX)]


@pytest.mark.parametrize(("cidrs", "message"), [
    (["0.0.0.0/1", "128.0.0.0/1"],
     "vpcConfig.publicAccessCidrs 0.0.0.0/1, 128.0.0.0/1 together cover 0.0.0.0/0: the Kubernetes API is open to the whole internet"),
    # Any split whose union is the whole space, overlapping and in any order, with other families listed too.
    (["192.0.0.0/2", "2001:db8::/32", "0.0.0.0/2", "64.0.0.0/2", "10.0.0.0/8", "128.0.0.0/2"],
     "vpcConfig.publicAccessCidrs 192.0.0.0/2, 0.0.0.0/2, 64.0.0.0/2, 10.0.0.0/8, 128.0.0.0/2 together cover 0.0.0.0/0: "
     "the Kubernetes API is open to the whole internet"),
    (["::/1", "8000::/1"], "vpcConfig.publicAccessCidrs ::/1, 8000::/1 together cover ::/0: the Kubernetes API is open to the "
                           "whole internet"),
])
def test_endpoint_open_to_the_world_in_pieces(cidrs, message):
    vpc = {**CLUSTER_PROPS["vpcConfig"], "endpointPublicAccess": True, "publicAccessCidrs": cidrs}
    assert found(ENDPOINT, cluster(vpcConfig=vpc)) == [("ml-dev-cluster-eks", message, ENDPOINT_FIX)]


@pytest.mark.parametrize("cidrs", [
    ["0.0.0.0/1", "128.0.0.0/2"],  # a quarter of the space left out
    ["0.0.0.0/1", "192.0.0.0/2", "128.0.0.0/3", "160.0.0.0/4", "176.0.0.0/5"],
    ["0.0.0.0/1", "::/1", "8000::/2"],  # half of each family: neither whole
    ["0.0.0.0/1", "04da6b54-80e4-46f7-96ec-b56ff0331ba9"],  # the rest unknown: not judged
])
def test_endpoint_cidrs_that_leave_part_of_the_space_out_pass(cidrs):
    vpc = {**CLUSTER_PROPS["vpcConfig"], "endpointPublicAccess": True, "publicAccessCidrs": cidrs}
    assert found(ENDPOINT, cluster(vpcConfig=vpc)) == []


def test_secrets_not_encrypted():
    assert found("eks-secrets-encrypted", cluster(encryptionConfig=None)) == [
        ("ml-dev-cluster-eks", "encryptionConfig is not set: Kubernetes Secrets are not envelope-encrypted with a KMS key",
         SECRETS_FIX)]


def test_secrets_not_among_encrypted_resources():
    config = {**CLUSTER_PROPS["encryptionConfig"], "resources": ["configmaps"]}
    assert found("eks-secrets-encrypted", cluster(encryptionConfig=config)) == [
        ("ml-dev-cluster-eks", 'encryptionConfig.resources does not include "secrets"', SECRETS_FIX)]


def test_secrets_without_key():
    assert found("eks-secrets-encrypted", cluster(encryptionConfig={"resources": ["secrets"], "provider": {}})) == [
        ("ml-dev-cluster-eks", "encryptionConfig.provider.keyArn is not set: Secrets have no KMS key to be encrypted with",
         SECRETS_FIX)]


def test_secrets_key_unknown_in_preview_and_list_form():
    assert found("eks-secrets-encrypted", cluster(encryptionConfig={"resources": ["secrets"], "provider": {"keyArn": UNKNOWN}})) == []
    assert found("eks-secrets-encrypted", cluster(encryptionConfig=[{"resources": ["secrets"], "provider": {}}])) == [
        ("ml-dev-cluster-eks", "encryptionConfig[0].provider.keyArn is not set: Secrets have no KMS key to be encrypted with",
         SECRETS_FIX)]


@pytest.mark.parametrize("logs", [["api", "authenticator"], None])
def test_audit_log_missing(logs):
    assert found("eks-audit-logs", cluster(enabledClusterLogTypes=logs)) == [
        ("ml-dev-cluster-eks", 'enabledClusterLogTypes does not include "audit": the API server\'s audit log is not kept',
         'Add "audit" to enabledClusterLogTypes (it goes to CloudWatch Logs /aws/eks/<cluster>/cluster).')]


# --- launch templates -----------------------------------------------------------------------

LT_PROPS = {"metadataOptions": {"httpEndpoint": "enabled", "httpPutResponseHopLimit": 1, "httpTokens": "required"},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}]}


def launch_template(**props) -> list[PlannedResource]:
    return [resource("aws:ec2/launchTemplate:LaunchTemplate", "gpu-lt", {**LT_PROPS, **props})]


def test_launch_template_compliant():
    assert found("launch-template-imdsv2", launch_template()) == []
    assert found("launch-template-imdsv2", launch_template(networkInterfaces=[{"associatePublicIpAddress": "false"}])) == []


NOT_SET = "is not set: instances accept IMDSv1 unless the AMI or the account's default requires IMDSv2"


@pytest.mark.parametrize(("options", "state"), [
    ({"httpEndpoint": "enabled", "httpTokens": "optional"}, 'is "optional": instances accept IMDSv1'),
    ({"httpEndpoint": "disabled"}, NOT_SET),
    (None, NOT_SET),
])
def test_launch_template_imdsv1(options, state):
    assert found("launch-template-imdsv2", launch_template(metadataOptions=options)) == [
        ("gpu-lt", f"metadataOptions.httpTokens {state}, whose credentials an SSRF can steal",
         "Set metadataOptions.httpTokens: required (and httpPutResponseHopLimit: 1).")]


def test_launch_template_public_ip():
    assert found("launch-template-imdsv2", launch_template(networkInterfaces=[{"deviceIndex": 0, "associatePublicIpAddress": "true"}])) == [
        ("gpu-lt", 'networkInterfaces[0].associatePublicIpAddress is "true": nodes get public IP addresses',
         'Remove associatePublicIpAddress (or set it to "false"); nodes reach out through the NAT gateways.')]


# --- GPU node groups ------------------------------------------------------------------------

GPU_GROUP = {"amiType": "AL2023_x86_64_STANDARD", "capacityType": "SPOT", "instanceTypes": ["g6.xlarge"],
             "labels": {"cloudml.io/gpu-type": "l4", "cloudml.io/pool": "l4"},
             "scalingConfig": {"desiredSize": 0, "maxSize": 8, "minSize": 0},
             "taints": [{"effect": "NO_SCHEDULE", "key": "nvidia.com/gpu", "value": "true"}]}
SYSTEM_GROUP = {"amiType": "AL2023_x86_64_STANDARD", "capacityType": "ON_DEMAND", "labels": {"cloudml.io/pool": "system"},
                "scalingConfig": {"desiredSize": 2, "maxSize": 40, "minSize": 2}}


def node_group(name: str = "gpu-l4", stack: str = "platform-dev", **props) -> PlannedResource:
    return resource("aws:eks/nodeGroup:NodeGroup", name, {**GPU_GROUP, **props}, stack=stack)


def test_gpu_pools_compliant():
    resources = [node_group(), resource("aws:eks/nodeGroup:NodeGroup", "system", SYSTEM_GROUP)]
    for rule in ("gpu-pool-max-size", "gpu-pool-scales-to-zero", "dev-stack-uses-spot"):
        assert found(rule, resources) == []


MAX_SIZE_FIX = "Lower the pool's max (scalingConfig.maxSize) to at most 16, or raise maxGpuPoolNodes in the pack config."


def test_gpu_pool_above_cap():
    group = node_group(scalingConfig={"minSize": 0, "maxSize": 20, "desiredSize": 0})
    assert found("gpu-pool-max-size", [group]) == [("gpu-l4", "scalingConfig.maxSize is 20, above the cap of 16 nodes per GPU pool",
                                                    MAX_SIZE_FIX)]
    assert found("gpu-pool-max-size", [group], PolicyConfig(max_gpu_pool_nodes=32)) == []


@pytest.mark.parametrize("props", [
    {"labels": {}, "taints": [{"key": "nvidia.com/gpu", "effect": "NO_SCHEDULE"}]},
    {"labels": {"nvidia.com/gpu.present": "true"}, "taints": []},
    {"labels": {}, "taints": [], "amiType": "AL2023_x86_64_NVIDIA"},
])
def test_gpu_pool_recognised_by_label_taint_or_ami(props):
    group = node_group(scalingConfig={"minSize": 0, "maxSize": 17}, **props)
    assert found("gpu-pool-max-size", [group]) == [("gpu-l4", "scalingConfig.maxSize is 17, above the cap of 16 nodes per GPU pool",
                                                    MAX_SIZE_FIX)]
    assert found("gpu-pool-max-size", [node_group(scalingConfig={"maxSize": 17}, labels={}, taints=[])]) == []


def test_gpu_pool_not_scaling_to_zero():
    group = node_group(scalingConfig={"minSize": 1, "maxSize": 4, "desiredSize": 1})
    [violation] = evaluate([RULE["gpu-pool-scales-to-zero"]], [group])
    assert (violation.level, violation.message, violation.fix) == (
        "advisory", "scalingConfig.minSize is 1: the GPU pool keeps 1 node(s) running when idle",
        "Set the pool's min (scalingConfig.minSize) to 0; the Cluster Autoscaler adds nodes when GPU pods wait.")


SPOT_FIX = "Add a GPU pool with capacity: spot (capacityType SPOT) for interruptible dev and sweep work."


def test_dev_stack_without_spot():
    groups = [node_group("gpu-a", capacityType="ON_DEMAND"), node_group("gpu-b", capacityType="ON_DEMAND")]
    assert found("dev-stack-uses-spot", groups) == [("gpu-a", (
        "no GPU node group of dev stack platform-dev has capacityType SPOT: every dev GPU hour is billed on-demand"), SPOT_FIX)]
    prod = [node_group("gpu-a", stack="platform-prod", capacityType="ON_DEMAND")]
    assert found("dev-stack-uses-spot", prod) == []


def test_a_stack_reading_a_dev_stack_is_dev():
    reference = resource("pulumi:pulumi:StackReference", "shared", {"name": "acme/cloudml/platform-dev"}, stack="gpu-burst")
    groups = [node_group("gpu-a", stack="gpu-burst", capacityType="ON_DEMAND")]
    assert found("dev-stack-uses-spot", groups) == []
    assert found("dev-stack-uses-spot", [*groups, reference]) == [("gpu-a", (
        "no GPU node group of dev stack gpu-burst has capacityType SPOT: every dev GPU hour is billed on-demand"), SPOT_FIX)]


