"""The EKS control plane (`Cluster`) and the add-ons that need nodes (`ClusterAddons`), under the mocks:
the exact children, IRSA wiring of every add-on, the OIDC provider, ordering, and the default
StorageClass against the Kubernetes 1.31 schema."""

from __future__ import annotations

import json

import kubernetes_validate
import pulumi
import pulumi_aws as aws
import pytest
from conftest import run_components, sample_config

from components.platform.cluster import Cluster
from components.platform.cluster_addons import ClusterAddons, storage_class_objects
from components.spec import load_platform

SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
ADMIN_KEY = "platform-admins-b53a6aa1"  # principal_key of the sample stack's one admin
CLUSTER_PARENT = {
    # child -> (type, parent)
    "c-secrets-key": ("aws:kms/key:Key", "c"),
    "c-role": ("aws:iam/role:Role", "c"),
    "c-role-policy": ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "c"),
    "c-eks": ("aws:eks/cluster:Cluster", "c"),
    f"c-admin-{ADMIN_KEY}": ("aws:eks/accessEntry:AccessEntry", "c"),
    f"c-admin-{ADMIN_KEY}-policy": ("aws:eks/accessPolicyAssociation:AccessPolicyAssociation", "c"),
    "c-oidc": ("aws:iam/openIdConnectProvider:OpenIdConnectProvider", "c"),
    "c-vpc-cni-irsa": ("cloudml:platform:ServiceAccountRole", "c"),
    "c-vpc-cni-irsa-role": ("aws:iam/role:Role", "c-vpc-cni-irsa"),
    "c-vpc-cni-irsa-cni": ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "c-vpc-cni-irsa"),
    "c-vpc-cni": ("aws:eks/addon:Addon", "c"),
    "c-kube-proxy": ("aws:eks/addon:Addon", "c"),
    "c-k8s": ("pulumi:providers:kubernetes", "c"),
    "c-api-from-0": ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "c"),  # privateAccessCidrs
}
ADDONS_PARENT = {
    "a-coredns": ("aws:eks/addon:Addon", "a"),
    "a-ebs-csi-irsa": ("cloudml:platform:ServiceAccountRole", "a"),
    "a-ebs-csi-irsa-role": ("aws:iam/role:Role", "a-ebs-csi-irsa"),
    "a-ebs-csi-irsa-ebs": ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "a-ebs-csi-irsa"),
    "a-ebs-csi": ("aws:eks/addon:Addon", "a"),
    "a-storage-classes": ("kubernetes:yaml/v2:ConfigGroup", "a"),
}


def _node_group(name: str, cluster: Cluster) -> aws.eks.NodeGroup:
    return aws.eks.NodeGroup(
        name, cluster_name=cluster.cluster_name, node_role_arn="arn:aws:iam::111122223333:role/nodes", subnet_ids=SUBNETS,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=1, max_size=2, desired_size=1),
    )


@pytest.fixture(scope="module")
def planned() -> tuple[dict, dict]:
    """The sample platform's Cluster `c` and ClusterAddons `a` after two node groups; the recorded
    resources and the Cluster's output values."""
    spec = load_platform(sample_config("platform-dev")["cloudml:platform"])
    outputs: dict = {}

    def build():
        cluster = Cluster("c", spec, SUBNETS, "us-west-2")
        ClusterAddons("a", cluster, after=[_node_group("ng-system", cluster), _node_group("ng-gpu", cluster)])
        names = ["cluster_name", "endpoint", "certificate_authority", "oidc_provider_arn", "oidc_issuer_url", "kubeconfig"]
        pulumi.Output.all(*[getattr(cluster, n) for n in names]).apply(lambda values: outputs.update(zip(names, values)))

    return run_components(build), outputs


def _children(resources: dict, component: str, parent_map: dict) -> dict:
    names = set(parent_map) | {component}
    by_urn = {r["urn"]: n for n, r in resources.items()}
    return {
        n: (r["type"], by_urn.get(r["parent"]))
        for n, r in resources.items()
        if n in names or by_urn.get(r["parent"]) in names
    }


def _trust(resources: dict, role: str) -> dict:
    [statement] = json.loads(resources[role]["inputs"]["assumeRolePolicy"])["Statement"]
    return statement


def test_cluster_creates_exactly_its_children(planned):
    """Cluster `c` creates these resources and nothing else, each under the right parent (a rename
    or an extra resource fails here)."""
    resources, _ = planned
    found = _children(resources, "c", CLUSTER_PARENT)
    found.pop("c")
    assert found == CLUSTER_PARENT


def test_cluster_addons_creates_exactly_its_children(planned):
    """ClusterAddons `a` creates the coredns and ebs-csi add-ons, the ebs-csi IRSA role and the
    StorageClass group, nothing else."""
    resources, _ = planned
    found = _children(resources, "a", ADDONS_PARENT)
    found.pop("a")
    assert found == ADDONS_PARENT


def test_oidc_provider_trusts_the_cluster_issuer_for_sts(planned):
    """The IAM OIDC provider is the cluster's own issuer with the STS audience, and no pinned
    thumbprint (IAM verifies EKS's issuer through its trusted CAs)."""
    resources, outputs = planned
    issuer = "https://oidc.eks.us-west-2.amazonaws.com/id/"
    oidc = resources["c-oidc"]["inputs"]
    assert oidc["url"].startswith(issuer) and oidc["url"] == outputs["oidc_issuer_url"]
    assert oidc["clientIdLists"] == ["sts.amazonaws.com"]
    assert "thumbprintLists" not in oidc
    assert resources["c-eks"]["urn"] in resources["c-oidc"]["dependsOn"]


@pytest.mark.parametrize("role, service_account, attachment, policy", [
    ("c-vpc-cni-irsa-role", "system:serviceaccount:kube-system:aws-node",
     "c-vpc-cni-irsa-cni", "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"),
    ("a-ebs-csi-irsa-role", "system:serviceaccount:kube-system:ebs-csi-controller-sa",
     "a-ebs-csi-irsa-ebs", "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"),
])
def test_irsa_roles_trust_only_their_service_account(planned, role, service_account, attachment, policy):
    """Each add-on role federates the cluster's OIDC provider and only that one service account's
    token (sub and aud pinned), and carries exactly the AWS managed policy the add-on needs."""
    resources, outputs = planned
    statement = _trust(resources, role)
    host = outputs["oidc_issuer_url"].removeprefix("https://")
    assert statement["Principal"] == {"Federated": outputs["oidc_provider_arn"]}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {"StringEquals": {f"{host}:sub": service_account, f"{host}:aud": "sts.amazonaws.com"}}
    assert resources[attachment]["inputs"]["policyArn"] == policy
    assert resources[attachment]["parent"] == resources[role]["parent"]


@pytest.mark.parametrize("addon, addon_name, attachment", [
    ("c-vpc-cni", "vpc-cni", "c-vpc-cni-irsa-cni"),
    ("c-kube-proxy", "kube-proxy", None),
    ("a-coredns", "coredns", None),
    ("a-ebs-csi", "aws-ebs-csi-driver", "a-ebs-csi-irsa-ebs"),
])
def test_addons_name_version_and_irsa_role(planned, addon, addon_name, attachment):
    """Each managed add-on has its EKS name, the cluster, EKS's default version for the cluster
    (no addonVersion), OVERWRITE conflict resolution, and — where it calls AWS — its own IRSA role,
    attached before the add-on is made."""
    resources, _ = planned
    inputs = resources[addon]["inputs"]
    assert inputs["addonName"] == addon_name
    assert inputs["clusterName"] == "ml-dev"
    assert "addonVersion" not in inputs
    assert inputs["resolveConflictsOnCreate"] == "OVERWRITE" and inputs["resolveConflictsOnUpdate"] == "OVERWRITE"
    if attachment is None:
        assert "serviceAccountRoleArn" not in inputs
    else:
        # The add-on's role is the one its managed policy is attached to (the attachment names the role).
        role_name = resources[attachment]["inputs"]["role"]
        assert inputs["serviceAccountRoleArn"] == f"arn:aws:iam::111122223333:role/{role_name}"
        assert resources[attachment]["urn"] in resources[addon]["dependsOn"]


def test_networking_and_dns_addons_are_preserved_on_delete(planned):
    """Deleting the vpc-cni, kube-proxy or coredns add-on resource leaves the running components in
    the cluster (pods keep networking and DNS)."""
    resources, _ = planned
    for addon in ("c-vpc-cni", "c-kube-proxy", "a-coredns"):
        assert resources[addon]["inputs"]["preserve"] is True, addon


def test_node_dependent_addons_wait_for_what_they_are_given(planned):
    """coredns and ebs-csi run Deployments, ACTIVE only once nodes run: both depend on every
    resource passed in `after`; vpc-cni and kube-proxy (DaemonSets) do not wait for nodes."""
    resources, _ = planned
    nodes = {resources["ng-system"]["urn"], resources["ng-gpu"]["urn"]}
    for addon in ("a-coredns", "a-ebs-csi"):
        assert nodes <= set(resources[addon]["dependsOn"]), addon
    for addon in ("c-vpc-cni", "c-kube-proxy"):
        assert not nodes & set(resources[addon]["dependsOn"]), addon


def test_storage_class_goes_to_the_cluster_after_the_driver_and_admin_access(planned):
    """The default StorageClass is applied with the cluster's provider, after the EBS CSI add-on
    (its provisioner) and after the admins' access exists (no implicit creator-admin)."""
    resources, _ = planned
    group = resources["a-storage-classes"]
    assert group["provider"].startswith(resources["c-k8s"]["urn"] + "::")
    assert resources["a-ebs-csi"]["urn"] in group["dependsOn"]
    assert resources[f"c-admin-{ADMIN_KEY}-policy"]["urn"] in group["dependsOn"]
    assert group["inputs"]["objs"] == storage_class_objects("ml-dev")


def test_default_storage_class_is_encrypted_gp3_bound_at_first_consumer():
    """One StorageClass `gp3`: the cluster default, EBS CSI provisioner, gp3, encrypted, bound in the
    AZ of the pod's node; valid against the Kubernetes 1.31 schema (strict: no unknown fields)."""
    [storage_class] = storage_class_objects("ml-dev")
    assert kubernetes_validate.validate(storage_class, "1.31.0", strict=True)
    assert storage_class["kind"] == "StorageClass" and storage_class["metadata"]["name"] == "gp3"
    assert storage_class["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    assert storage_class["metadata"]["labels"]["app.kubernetes.io/instance"] == "ml-dev-gp3"


def test_cluster_outputs(planned):
    """The outputs the platform wires into IRSA roles and team stacks carry the cluster's values;
    the kubeconfig is a secret (the provider made from it records it redacted)."""
    resources, outputs = planned
    assert outputs["cluster_name"] == "ml-dev"
    assert outputs["endpoint"].startswith("https://") and outputs["endpoint"].endswith(".eks.amazonaws.com")
    kubeconfig_cluster = json.loads(outputs["kubeconfig"])["clusters"][0]["cluster"]
    assert outputs["certificate_authority"] == kubeconfig_cluster["certificate-authority-data"]
    assert outputs["oidc_issuer_url"].startswith("https://oidc.eks.us-west-2.amazonaws.com/id/")
    assert outputs["oidc_provider_arn"].startswith("arn:aws:iam:")
    assert resources["c-k8s"]["inputs"]["kubeconfig"] == "[secret]"


def test_private_endpoint_admits_only_the_listed_networks_on_443(planned):
    """The sample's privateAccessCidrs (10.0.0.0/8) get TCP 443 on the cluster security group, and the
    Kubernetes objects wait for that rule (it is part of what the provider needs to reach the API)."""
    resources, _ = planned
    rule = resources["c-api-from-0"]["inputs"]
    assert (rule["cidrIpv4"], rule["ipProtocol"], rule["fromPort"], rule["toPort"]) == ("10.0.0.0/8", "tcp", 443, 443)
    assert rule["securityGroupId"].startswith("sg-")
    assert resources["c-api-from-0"]["urn"] in resources["a-storage-classes"]["dependsOn"]


def test_kubeconfig_uses_the_stacks_aws_profile_when_set():
    """With aws:profile set, `aws eks get-token` runs as that profile (the principal listed in admins);
    without it, the environment's credentials as usual."""
    import json

    from components.platform.cluster import kubeconfig

    with_profile = json.loads(kubeconfig("c", "https://x", "Q0E=", "us-west-2", "platform-admin"))
    assert with_profile["users"][0]["user"]["exec"]["env"] == [{"name": "AWS_PROFILE", "value": "platform-admin"}]
    without = json.loads(kubeconfig("c", "https://x", "Q0E=", "us-west-2"))
    assert "env" not in without["users"][0]["user"]["exec"]
