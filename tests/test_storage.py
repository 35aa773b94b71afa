"""Platform storage (`Storage`) under the mocks, plus its pure policy builders: the exact children,
what makes every bucket private, encrypted and TLS-only, lifecycle days from the spec, protection
of everything that holds data, the EFS file system's network exposure and StorageClass (against the
Kubernetes 1.31 schema), IRSA trust pinned to the drivers' service accounts, a Mountpoint driver
role without any permission (team volumes read with the pod's own role), and FSx for Lustre off by
default and correct when enabled."""

from __future__ import annotations

import json

import kubernetes_validate
import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from conftest import run_components, sample_config

from components.errors import ConfigError
from components.platform.irsa import trust_policy
from components.platform.storage import Storage
from components.platform.storage_fs import shared_storage_class_objects
from components.platform.storage_s3 import (
    MAX_BUCKET_PREFIX,
    bucket_name_problems,
    bucket_prefix,
    storage_key_policy,
)
from components.spec import PlatformSpec, load_platform

PROVIDER = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1", "subnet-0123456789abcdef2"]
VPC_ID = "vpc-0123456789abcdef0"
VPC_CIDR = "10.40.0.0/16"
ROLES = ("datasets", "models", "checkpoints", "logs")
BUCKET_PARTS = {
    "": "aws:s3/bucket:Bucket",
    "-public-access-block": "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "-ownership": "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "-encryption": "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "-policy": "aws:s3/bucketPolicy:BucketPolicy",
    "-lifecycle": "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
}
S3_CHILDREN = {
    "s": ("cloudml:platform:Storage", None),
    "s-key": ("aws:kms/key:Key", "s"),
    **{f"s-{role}{part}": (typ, "s") for role in ROLES for part, typ in BUCKET_PARTS.items()},
    "s-models-versioning": ("aws:s3/bucketVersioning:BucketVersioning", "s"),
    "s-s3-csi-irsa": ("cloudml:platform:ServiceAccountRole", "s"),
    "s-s3-csi-irsa-role": ("aws:iam/role:Role", "s-s3-csi-irsa"),
    "s-s3-csi": ("aws:eks/addon:Addon", "s"),
}
EFS_CHILDREN = {
    "s-efs": ("aws:efs/fileSystem:FileSystem", "s"),
    "s-efs-sg": ("aws:ec2/securityGroup:SecurityGroup", "s"),
    "s-efs-sg-nfs": ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "s"),
    **{f"s-efs-mount-{i}": ("aws:efs/mountTarget:MountTarget", "s") for i in range(len(SUBNETS))},
    "s-efs-csi-irsa": ("cloudml:platform:ServiceAccountRole", "s"),
    "s-efs-csi-irsa-role": ("aws:iam/role:Role", "s-efs-csi-irsa"),
    "s-efs-csi-irsa-efs": ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "s-efs-csi-irsa"),
    "s-efs-csi": ("aws:eks/addon:Addon", "s"),
    "s-efs-storage-class": ("kubernetes:yaml/v2:ConfigGroup", "s"),
}
LUSTRE_CHILDREN = {
    "s-lustre-sg": ("aws:ec2/securityGroup:SecurityGroup", "s"),
    "s-lustre-sg-lnet": ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "s"),
    "s-lustre-sg-lnet-out": ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "s"),
    "s-lustre-sg-lnet-1018": ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "s"),
    "s-lustre-sg-lnet-1018-out": ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "s"),
    "s-lustre": ("aws:fsx/lustreFileSystem:LustreFileSystem", "s"),
    "s-lustre-datasets": ("aws:fsx/dataRepositoryAssociation:DataRepositoryAssociation", "s"),
}
# Stack-level helpers the builds below create next to the component.
HELPERS = {"k8s", "nodes"}


def _plan(platform_overrides: dict, subnets_as_output: bool = False) -> tuple[dict, dict]:
    """Build Storage `s` for the sample platform with these config overrides, after a node group;
    return the recorded resources and the component's output values."""
    raw = sample_config("platform-dev")["cloudml:platform"]
    raw.update(platform_overrides)
    spec = load_platform(raw)
    values: dict = {}

    def build():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        nodes = aws.eks.NodeGroup(
            "nodes", cluster_name="ml-dev", node_role_arn="arn:aws:iam::111122223333:role/nodes", subnet_ids=SUBNETS,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=1, max_size=2, desired_size=1),
        )
        subnets = spec.network.private_subnet_ids or SUBNETS
        storage = Storage(
            "s", spec, vpc_id=VPC_ID, vpc_cidr=VPC_CIDR,
            private_subnet_ids=pulumi.Output.from_input(subnets) if subnets_as_output else list(subnets),
            oidc_provider_arn=PROVIDER, oidc_issuer_url=ISSUER, provider=provider, cluster_name="ml-dev", after=[nodes],
        )
        wanted = {
            "key_arn": storage.kms_key_arn,
            **{f"name:{r}": storage.bucket_names[r] for r in ROLES},
            **{f"arn:{r}": storage.bucket_arns[r] for r in ROLES},
        }
        if storage.shared:
            wanted.update(efs_id=storage.efs_id, efs_sg=storage.shared.security_group.id)
        if storage.lustre_filesystem:
            wanted.update(lustre_id=storage.lustre.id, lustre_sg=storage.lustre_filesystem.security_group.id)
        values["storage_class"] = storage.storage_class
        values["lustre"] = storage.lustre
        keys = list(wanted)
        pulumi.Output.all(*wanted.values()).apply(lambda vs: values.update(zip(keys, vs)))

    return run_components(build), values


@pytest.fixture(scope="module")
def default() -> tuple[dict, dict]:
    """The sample platform as configured: EFS, no Lustre, protected, default expiry days."""
    return _plan({})


@pytest.fixture(scope="module")
def lustre() -> tuple[dict, dict]:
    """Lustre on (2400 GiB), no EFS, protection off, custom expiry days."""
    return _plan({
        "storage": {"sharedFilesystem": "none", "lustre": {"enabled": True, "storageCapacityGib": 2400},
                    "checkpointExpiryDays": 14, "logExpiryDays": 45},
        "protectStatefulResources": False,
    })


def _children(resources: dict) -> dict:
    by_urn = {r["urn"]: n for n, r in resources.items()}
    return {n: (r["type"], by_urn.get(r["parent"])) for n, r in resources.items() if n not in HELPERS}


def _urn(resources: dict, name: str) -> str:
    return resources[name]["urn"]


# --- the child contract ---------------------------------------------------------------------------


def test_default_children_are_key_buckets_mountpoint_and_efs(default):
    """With EFS and without Lustre, Storage makes exactly the key, four fully configured buckets
    (versioning on models only), the Mountpoint driver with its role, and the EFS pieces (one mount
    target per subnet); no FSx resource."""
    resources, _ = default
    assert _children(resources) == {**S3_CHILDREN, **EFS_CHILDREN}


def test_lustre_children_replace_efs_when_so_configured(lustre):
    """sharedFilesystem none drops every EFS child; lustre.enabled adds the Lustre security group with
    its four rules, the file system and the datasets association."""
    resources, values = lustre
    assert _children(resources) == {**S3_CHILDREN, **LUSTRE_CHILDREN}
    assert values["storage_class"] is None


# --- buckets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_bucket_is_private_and_owner_enforced(default, role):
    """Every bucket blocks public ACLs and policies in all four ways and disables ACLs
    (BucketOwnerEnforced), on that bucket; its name starts with `<platform>-<role>-`."""
    resources, values = default
    name = values[f"name:{role}"]
    assert resources[f"s-{role}"]["inputs"]["bucketPrefix"] == f"ml-dev-{role}-"
    assert resources[f"s-{role}"]["inputs"]["forceDestroy"] is False
    block = resources[f"s-{role}-public-access-block"]["inputs"]
    assert block == {"bucket": name, "blockPublicAcls": True, "ignorePublicAcls": True,
                     "blockPublicPolicy": True, "restrictPublicBuckets": True}
    assert resources[f"s-{role}-ownership"]["inputs"] == {"bucket": name, "rule": {"objectOwnership": "BucketOwnerEnforced"}}


@pytest.mark.parametrize("role", ROLES)
def test_bucket_default_encryption_is_sse_kms_with_storage_key(default, role):
    """Every bucket encrypts new objects with SSE-KMS under the storage key, with S3 Bucket Keys."""
    resources, values = default
    encryption = resources[f"s-{role}-encryption"]["inputs"]
    assert encryption["bucket"] == values[f"name:{role}"]
    assert encryption["rules"] == [{
        "applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": values["key_arn"]},
        "bucketKeyEnabled": True,
    }]


@pytest.mark.parametrize("role", ROLES)
def test_bucket_policy_denies_requests_without_tls(default, role):
    """Every bucket's policy is one Deny of s3:* for anyone when aws:SecureTransport is false, on the
    bucket ARN and every object ARN, and it is applied after the public-access block."""
    resources, values = default
    policy = resources[f"s-{role}-policy"]
    assert policy["inputs"]["bucket"] == values[f"name:{role}"]
    arn = values[f"arn:{role}"]
    assert json.loads(policy["inputs"]["policy"])["Statement"] == [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]
    assert _urn(resources, f"s-{role}-public-access-block") in policy["dependsOn"]


def test_only_models_bucket_is_versioned(default):
    """Models keep every version (status Enabled); no other bucket has a versioning resource."""
    resources, values = default
    versioning = [n for n, r in resources.items() if r["type"] == "aws:s3/bucketVersioning:BucketVersioning"]
    assert versioning == ["s-models-versioning"]
    assert resources["s-models-versioning"]["inputs"] == {
        "bucket": values["name:models"], "versioningConfiguration": {"status": "Enabled"},
    }


ABORT_RULE = {"id": "abort-incomplete-multipart-uploads", "status": "Enabled", "filter": {},
              "abortIncompleteMultipartUpload": {"daysAfterInitiation": 7}}


@pytest.mark.parametrize(("plan", "days"), [("default", {"checkpoints": 30, "logs": 90}),
                                            ("lustre", {"checkpoints": 14, "logs": 45})])
def test_lifecycle_expires_checkpoints_and_logs_after_configured_days(plan, days, request):
    """Checkpoints and logs expire after checkpointExpiryDays / logExpiryDays (defaults 30/90, and
    14/45 when configured); every bucket aborts incomplete multipart uploads after 7 days; datasets
    and models never expire."""
    resources, _ = request.getfixturevalue(plan)
    for role in ROLES:
        rules = resources[f"s-{role}-lifecycle"]["inputs"]["rules"]
        expected = [ABORT_RULE]
        if role in days:
            expected.append({"id": f"expire-{role}", "status": "Enabled", "filter": {}, "expiration": {"days": days[role]}})
        assert rules == expected, role


# --- protection -----------------------------------------------------------------------------------


def _flags(resources: dict, names) -> dict:
    return {n: (resources[n]["protect"], resources[n]["retainOnDelete"]) for n in names}


def test_data_holders_protected_and_retained_by_default(default):
    """The key, the four buckets and the EFS file system are protected and retained on delete; the
    buckets' configuration (public-access block, encryption, policy...) is retained with them."""
    resources, _ = default
    holders = ["s-key", *(f"s-{r}" for r in ROLES), "s-efs"]
    assert _flags(resources, holders) == {n: (True, True) for n in holders}
    config = [f"s-{r}{part}" for r in ROLES for part in BUCKET_PARTS if part] + ["s-models-versioning"]
    assert {n: resources[n]["retainOnDelete"] for n in config} == {n: True for n in config}


def test_protection_follows_spec_but_retention_stays(lustre):
    """protectStatefulResources: false lifts `protect` from the key and buckets, which are still retained
    on delete (data is never deleted by the stack); the Lustre file system is then deleted with the stack,
    since a retained one would keep its network interfaces in the stack's subnets and block the VPC."""
    resources, _ = lustre
    holders = ["s-key", *(f"s-{r}" for r in ROLES)]
    assert _flags(resources, holders) == {n: (False, True) for n in holders}
    assert _flags(resources, ["s-lustre"]) == {"s-lustre": (False, False)}


def test_bucket_prefix_fits_s3_limit_and_keeps_the_role():
    """A 32-character platform name is shortened (not the role) so the prefix stays within 37
    characters, with no trailing hyphen before the role."""
    assert bucket_prefix("ml-dev", "checkpoints") == "ml-dev-checkpoints-"
    long = bucket_prefix("a" * 23 + "-" + "b" * 8, "checkpoints")
    assert len(long) <= MAX_BUCKET_PREFIX and long == "a" * 23 + "-checkpoints-"
    assert all(len(bucket_prefix("x" * 32, r)) <= MAX_BUCKET_PREFIX for r in ROLES)


def test_reserved_bucket_prefix_is_a_config_error():
    """A platform name starting with a prefix S3 reserves (xn--) is reported at cloudml:platform.name
    before anything is created (load_platform reports it with the other rules: test_spec_platform.py),
    and Storage refuses to build with it."""
    raw = sample_config("platform-dev")["cloudml:platform"]
    with pytest.raises(ConfigError):
        load_platform({**raw, "name": "xn--ml"})
    spec = PlatformSpec.model_validate({**raw, "name": "xn--ml"})  # fields only: the component's own check
    [problem] = bucket_name_problems(spec)
    assert problem.path == "cloudml:platform.name" and "'xn--'" in problem.message
    with pytest.raises(ConfigError):
        Storage("s", spec, vpc_id=VPC_ID, vpc_cidr=VPC_CIDR, private_subnet_ids=SUBNETS, oidc_provider_arn=PROVIDER,
                oidc_issuer_url=ISSUER, provider=None, cluster_name="ml-dev", after=[])


# --- KMS ------------------------------------------------------------------------------------------


def test_storage_key_rotates_and_defers_to_iam_without_lustre(default):
    """The key rotates yearly and its policy is only the AWS default (the account's IAM policies
    decide), with no FSx statement while Lustre is off."""
    resources, _ = default
    key = resources["s-key"]["inputs"]
    assert key["enableKeyRotation"] is True
    assert json.loads(key["policy"])["Statement"] == [{
        "Sid": "EnableIamPolicies", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:*", "Resource": "*",
    }]


def test_key_policy_admits_fsx_s3_roles_on_datasets_only():
    """With Lustre, FSx's S3 service-linked roles of this account may use the key through S3 in
    this region, only for objects of the datasets bucket."""
    policy = json.loads(storage_key_policy("111122223333", "aws", "us-west-2", "amazonaws.com", "ml-dev-datasets-"))
    fsx = policy["Statement"][1]
    assert fsx["Principal"] == {"AWS": "*"} and "kms:Decrypt" in fsx["Action"]
    assert fsx["Condition"] == {
        "StringEquals": {"kms:CallerAccount": "111122223333", "kms:ViaService": "s3.us-west-2.amazonaws.com"},
        "StringLike": {"aws:userid": "*:FSx", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::ml-dev-datasets-*"},
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/aws-service-role/"
                                        "s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_*"},
    }


# --- EFS ------------------------------------------------------------------------------------------


def test_efs_encrypted_with_storage_key(default):
    """The shared file system is encrypted at rest with the storage key (elastic throughput)."""
    resources, values = default
    efs = resources["s-efs"]["inputs"]
    assert efs["encrypted"] is True and efs["kmsKeyId"] == values["key_arn"]
    assert efs["throughputMode"] == "elastic"


def test_efs_security_group_admits_only_nfs_from_vpc(default):
    """The EFS security group has no inline rules and exactly one rule of its own: TCP 2049 from
    the VPC CIDR (no egress rule: the provider strips AWS's allow-all egress)."""
    resources, values = default
    group = resources["s-efs-sg"]["inputs"]
    assert group["vpcId"] == VPC_ID and "ingress" not in group and "egress" not in group
    rules = {n: r["inputs"] for n, r in resources.items()
             if r["type"].startswith("aws:vpc/securityGroup") and r["inputs"]["securityGroupId"] == values["efs_sg"]}
    assert list(rules) == ["s-efs-sg-nfs"]
    rule = rules["s-efs-sg-nfs"]
    assert (rule["ipProtocol"], rule["fromPort"], rule["toPort"], rule["cidrIpv4"]) == ("tcp", 2049, 2049, VPC_CIDR)


def test_one_mount_target_per_private_subnet(default):
    """Each private subnet gets one mount target on the file system, behind the EFS security group."""
    resources, values = default
    targets = [r["inputs"] for r in resources.values() if r["type"] == "aws:efs/mountTarget:MountTarget"]
    assert sorted(t["subnetId"] for t in targets) == SUBNETS
    assert all(t["fileSystemId"] == values["efs_id"] and t["securityGroups"] == [values["efs_sg"]] for t in targets)


def test_mount_targets_from_output_subnets_follow_network_spec():
    """Given the subnets as an Output (an existing VPC with two subnets), the mount targets are
    counted from the network spec and land in exactly those subnets."""
    two = SUBNETS[:2]
    resources, _ = _plan({"network": {"vpcId": VPC_ID, "privateSubnetIds": two}}, subnets_as_output=True)
    targets = sorted(r["inputs"]["subnetId"] for r in resources.values() if r["type"] == "aws:efs/mountTarget:MountTarget")
    assert targets == two


def test_shared_storage_class_parameters(default):
    """`cloudml-shared` provisions EFS access points on this file system under /teams, owned by
    uid/gid 1000 (the restricted pods' user) with 700 permissions, mounted over TLS."""
    resources, values = default
    [storage_class] = resources["s-efs-storage-class"]["inputs"]["objs"]
    assert values["storage_class"] == "cloudml-shared" == storage_class["metadata"]["name"]
    assert storage_class["provisioner"] == "efs.csi.aws.com"
    assert storage_class["parameters"] == {
        "provisioningMode": "efs-ap", "fileSystemId": values["efs_id"], "directoryPerms": "700",
        "uid": "1000", "gid": "1000", "basePath": "/teams",
    }
    assert storage_class["mountOptions"] == ["tls"]


def test_shared_storage_class_is_valid_kubernetes_131():
    """The rendered StorageClass passes the Kubernetes 1.31 schema in strict mode (unknown fields fail)."""
    [obj] = shared_storage_class_objects("ml-dev", "fs-0123456789abcdef0")
    # validate raises on the first schema violation and returns the schema version it used
    assert kubernetes_validate.validate(obj, "1.31.0", strict=True) == "1.31"


def test_storage_class_waits_for_driver_and_mount_targets(default):
    """The StorageClass is applied through the cluster's provider only after the EFS CSI add-on,
    every mount target and `after` (the nodes) exist."""
    resources, _ = default
    group = resources["s-efs-storage-class"]
    assert group["provider"].startswith(_urn(resources, "k8s") + "::")
    needed = {_urn(resources, n) for n in ["s-efs-csi", "nodes", *(f"s-efs-mount-{i}" for i in range(len(SUBNETS)))]}
    assert needed <= set(group["dependsOn"])


# --- CSI drivers and IRSA -------------------------------------------------------------------------


@pytest.mark.parametrize(("addon", "addon_name", "service_account"), [
    ("s-efs-csi", "aws-efs-csi-driver", "efs-csi-controller-sa"),
    ("s-s3-csi", "aws-mountpoint-s3-csi-driver", "s3-csi-driver-sa"),
])
def test_csi_addon_uses_role_only_its_service_account_can_assume(default, addon, addon_name, service_account):
    """Each CSI driver add-on runs with its own IRSA role, whose trust admits only
    kube-system/<driver service account> (sub and aud pinned); the add-on waits for the nodes, the
    role and whatever policy the role has (the EFS driver's managed policy; the Mountpoint role has none)."""
    resources, _ = default
    inputs = resources[addon]["inputs"]
    assert (inputs["addonName"], inputs["clusterName"]) == (addon_name, "ml-dev")
    role = f"{addon}-irsa-role"
    assert inputs["serviceAccountRoleArn"].startswith(f"arn:aws:iam::111122223333:role/{role}-")
    assert json.loads(resources[role]["inputs"]["assumeRolePolicy"]) == json.loads(
        trust_policy(PROVIDER, ISSUER, "kube-system", service_account)
    )
    policies = [n for n in resources if n.startswith(f"{addon}-irsa-") and n != role]
    assert len(policies) == (1 if addon == "s-efs-csi" else 0)
    needed = {_urn(resources, "nodes"), _urn(resources, role), *(_urn(resources, p) for p in policies)}
    assert needed <= set(resources[addon]["dependsOn"])


def test_efs_csi_role_has_the_managed_driver_policy(default):
    """The EFS CSI role carries AmazonEFSCSIDriverPolicy and nothing else."""
    resources, _ = default
    attachments = [r["inputs"]["policyArn"] for n, r in resources.items() if n.startswith("s-efs-csi-irsa-")
                   and r["type"] != "aws:iam/role:Role"]
    assert attachments == ["arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"]


def test_mountpoint_driver_role_can_do_nothing(default):
    """The Mountpoint driver reads nothing with its own identity (team volumes use the pod's role):
    its IRSA role has no inline policy, no managed policy and no attachment, and no policy anywhere
    in Storage names it."""
    resources, _ = default
    role = resources["s-s3-csi-irsa-role"]
    assert sorted(n for n in resources if n.startswith("s-s3-csi-irsa")) == ["s-s3-csi-irsa", "s-s3-csi-irsa-role"]
    assert not {"inlinePolicies", "managedPolicyArns"} & set(role["inputs"])
    role_name = role["inputs"]["namePrefix"]
    grants = {name: str(record["inputs"]["role"]) for name, record in resources.items() if record["type"] in (
        "aws:iam/rolePolicy:RolePolicy", "aws:iam/rolePolicyAttachment:RolePolicyAttachment")}
    assert grants["s-efs-csi-irsa-efs"].startswith("s-efs-csi-irsa-role-")  # the check sees grants to a role
    assert not [name for name, granted_to in grants.items() if granted_to.startswith(role_name)]


# --- FSx for Lustre -------------------------------------------------------------------------------


def test_lustre_off_by_default(default):
    """The sample platform has no FSx resource and no Lustre output."""
    resources, values = default
    assert not [n for n, r in resources.items() if r["type"].startswith("aws:fsx/")]
    assert values["lustre"] is None


def test_lustre_file_system_when_enabled(lustre):
    """Enabled Lustre is PERSISTENT_2 with the configured capacity, encrypted with the storage key,
    in the first private subnet behind its own security group."""
    resources, values = lustre
    fs = resources["s-lustre"]["inputs"]
    assert (fs["deploymentType"], fs["storageCapacity"]) == ("PERSISTENT_2", 2400)
    assert fs["kmsKeyId"] == values["key_arn"]
    assert fs["subnetIds"] == SUBNETS[0]
    assert fs["securityGroupIds"] == [values["lustre_sg"]]
    assert values["lustre"] is not None


def test_lustre_security_group_admits_lustre_ports_from_vpc_only(lustre):
    """Lustre's security group has exactly TCP 988 and 1018-1023 from the VPC CIDR in (and the same
    out to the VPC), and the file system is created after those rules."""
    resources, values = lustre
    rules = {(r["type"].rsplit(":", 1)[-1], r["inputs"]["fromPort"], r["inputs"]["toPort"], r["inputs"]["cidrIpv4"],
              r["inputs"]["ipProtocol"])
             for r in resources.values()
             if r["type"].startswith("aws:vpc/securityGroup") and r["inputs"]["securityGroupId"] == values["lustre_sg"]}
    assert rules == {(kind, low, high, VPC_CIDR, "tcp")
                     for kind in ("SecurityGroupIngressRule", "SecurityGroupEgressRule")
                     for low, high in ((988, 988), (1018, 1023))}
    assert {_urn(resources, n) for n in LUSTRE_CHILDREN if n.startswith("s-lustre-sg-")} <= set(resources["s-lustre"]["dependsOn"])


def test_lustre_imports_datasets_bucket_one_way(lustre):
    """The datasets bucket is linked at /datasets with automatic import of new, changed and deleted
    objects and no export; the association waits for the key policy admitting FSx, which the key
    now carries."""
    resources, values = lustre
    association = resources["s-lustre-datasets"]
    assert association["inputs"] == {
        "fileSystemId": values["lustre_id"],
        "fileSystemPath": "/datasets",
        "dataRepositoryPath": f"s3://{values['name:datasets']}",
        "batchImportMetaDataOnCreate": True,
        "deleteDataInFilesystem": False,
        "s3": {"autoImportPolicy": {"events": ["NEW", "CHANGED", "DELETED"]}},
    }
    assert _urn(resources, "s-key") in association["dependsOn"]
    sids = [s["Sid"] for s in json.loads(resources["s-key"]["inputs"]["policy"])["Statement"]]
    assert sids == ["EnableIamPolicies", "FsxLustreLinkedBucket"]
