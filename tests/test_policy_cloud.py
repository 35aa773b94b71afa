"""The AWS rules of the policy pack (policies/rules/cloud*.py): the rule list, the S3 rules and
`stateful-resources-protected` here (EKS and nodes in test_policy_cloud_eks.py, IAM in
test_policy_cloud_iam.py, both using this module's helpers).

Per rule: a compliant fixture that yields nothing, and minimal mutations of it with the exact
message and fix pinned (`found` returns both; every fix is a sentence, as the workload rules'
are). Then the sample stacks: every stack passes every AWS rule, advisory ones too, and a copy of
platform-dev's config with protectStatefulResources off is caught.
"""

from __future__ import annotations

import json

import pytest

from cloudml.plan import Planner
from conftest import sample_config, write_stack
from policies.core import MANDATORY, PlannedResource, PolicyConfig, evaluate
from policies.rules.cloud import RULES
from policies.rules.cloud_common import UNKNOWN_SENTINELS

RULE = {rule.name: rule for rule in RULES}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi_policy's UNKNOWN_STRING_VALUE
PARENT = "urn:pulumi:platform-dev::cloudml::cloudml:platform:Platform$cloudml:platform:Storage::ml-dev-storage"


def resource(type_: str, name: str, props: dict, *, stack: str = "platform-dev", parent: str | None = PARENT,
             protect: bool = False, retain: bool = False) -> PlannedResource:
    return PlannedResource(type_, name, f"urn:pulumi:{stack}::cloudml::{type_}::{name}", props, protect, retain, parent)


def found(rule: str, resources: list[PlannedResource], config: PolicyConfig | None = None) -> list[tuple[str, str, str]]:
    """(resource name, message, fix) of every finding of one rule."""
    return [(v.resource_name, v.message, v.fix) for v in evaluate([RULE[rule]], resources, config)]


def plan_resources(plan) -> list[PlannedResource]:
    """A plan's resources as rules see them (what cloudml.plan's `planned_resources` does; AWS rules
    need no Kubernetes objects)."""
    return [PlannedResource(r["type"], r["name"], r["urn"], r["inputs"], r.get("protect", False),
                            r.get("retainOnDelete", False), r.get("parent")) for r in plan.resources]


def test_every_rule_is_documented():
    assert list(RULE) == [
        "s3-bucket-public-access-blocked", "s3-bucket-kms-encrypted", "s3-bucket-tls-only", "eks-endpoint-restricted",
        "eks-secrets-encrypted", "eks-audit-logs", "launch-template-imdsv2", "gpu-pool-max-size",
        "gpu-pool-scales-to-zero", "dev-stack-uses-spot", "iam-no-wildcards", "stateful-resources-protected",
    ]
    for rule in RULES:
        assert rule.description.endswith(".") and rule.opt_out, rule.name
    assert {r.name for r in RULES if r.level != MANDATORY} == {"gpu-pool-scales-to-zero", "dev-stack-uses-spot"}


def test_unknown_sentinels_are_pulumi_policys():
    proxy = pytest.importorskip("pulumi_policy.proxy")
    assert UNKNOWN_SENTINELS == {v for k, v in vars(proxy).items() if k.startswith("UNKNOWN_") and k.endswith("_VALUE")}


def test_gpu_names_match_the_platform():
    from components import labels
    from policies.rules import cloud_eks

    assert (cloud_eks.GPU_TYPE_LABEL, cloud_eks.GPU_PRESENT_LABEL, cloud_eks.GPU_TAINT_KEY) == (
        labels.GPU_TYPE_LABEL, labels.GPU_PRESENT_LABEL, labels.GPU_TAINT_KEY)


# --- S3 -------------------------------------------------------------------------------------

BUCKET_ID = "ml-dev-data-0a1b2c3d"  # as the plan's mocks name a prefixed bucket
ARN = f"arn:aws:s3:::{BUCKET_ID}"
TLS_STATEMENT = {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                 "Resource": [ARN, f"{ARN}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def bucket_set(bucket_value: str = BUCKET_ID, *, statement: dict | None = None, sse: str = "aws:kms") -> dict[str, PlannedResource]:
    """A bucket as PlatformBucket makes it: the bucket and its configuration resources, by role."""
    policy = json.dumps({"Version": "2012-10-17", "Statement": [statement or TLS_STATEMENT]})
    return {
        "bucket": resource("aws:s3/bucket:Bucket", "data", {"bucketPrefix": "ml-dev-data-", "forceDestroy": False}, protect=True),
        "block": resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "data-public-access-block", {
            "bucket": bucket_value, "blockPublicAcls": True, "blockPublicPolicy": True,
            "ignorePublicAcls": True, "restrictPublicBuckets": True}),
        "sse": resource("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "data-encryption", {
            "bucket": bucket_value, "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": sse, "kmsMasterKeyId": "arn:aws:kms:us-west-2:111122223333:key/k"},
                                               "bucketKeyEnabled": True}]}),
        "policy": resource("aws:s3/bucketPolicy:BucketPolicy", "data-policy", {"bucket": bucket_value, "policy": policy}),
    }


S3_RULES = ("s3-bucket-public-access-blocked", "s3-bucket-kms-encrypted", "s3-bucket-tls-only")
PUBLIC_ACCESS_BLOCK_FIX = ("Add a BucketPublicAccessBlock on this bucket with blockPublicAcls: true, blockPublicPolicy: true, "
                           "ignorePublicAcls: true, restrictPublicBuckets: true.")
KMS_FIX = 'Set applyServerSideEncryptionByDefault.sseAlgorithm: "aws:kms" with kmsMasterKeyId: <the storage key ARN>.'
KMS_MISSING_FIX = ('Add a BucketServerSideEncryptionConfiguration on this bucket with applyServerSideEncryptionByDefault.'
                   'sseAlgorithm: "aws:kms" with kmsMasterKeyId: <the storage key ARN>.')
TLS_FIX = ('Add the bucket policy statement {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": '
           '[<bucket ARN>, "<bucket ARN>/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.')


@pytest.mark.parametrize("rule", S3_RULES)
def test_s3_compliant_bucket(rule):
    assert found(rule, list(bucket_set().values())) == []


@pytest.mark.parametrize("rule", S3_RULES)
def test_s3_joins_by_pulumi_naming_when_the_bucket_id_is_unknown(rule):
    """A real preview of a new stack: every `bucket` input (and the ARN-derived policy) is unknown."""
    resources = bucket_set(UNKNOWN)
    resources["policy"] = resource("aws:s3/bucketPolicy:BucketPolicy", "data-policy", {"bucket": UNKNOWN, "policy": UNKNOWN})
    assert found(rule, list(resources.values())) == []


def test_s3_joins_by_value_whatever_the_names():
    bucket = resource("aws:s3/bucket:Bucket", "b", {"bucket": "explicit-name"}, parent=None)
    block = resource("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "unrelated-name", {
        "bucket": "explicit-name", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": False,
        "restrictPublicBuckets": True})
    assert found("s3-bucket-public-access-blocked", [bucket, block]) == [
        ("unrelated-name", "ignorePublicAcls is not true (bucket b): the bucket can be made public", "Set ignorePublicAcls: true.")]


def test_s3_known_values_overrule_naming():
    """A block named after the bucket but made for another (known) bucket does not count for it."""
    resources = bucket_set()
    resources["block"] = resource(resources["block"].type, "data-public-access-block", {**resources["block"].props, "bucket": "someone-elses"})
    assert found("s3-bucket-public-access-blocked", list(resources.values())) == [("data", (
        "no aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock for this bucket: nothing in the stack keeps "
        "blockPublicAcls, blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets on"), PUBLIC_ACCESS_BLOCK_FIX)]


def test_public_access_block_missing():
    resources = bucket_set()
    del resources["block"]
    assert found("s3-bucket-public-access-blocked", list(resources.values())) == [("data", (
        "no aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock for this bucket: nothing in the stack keeps "
        "blockPublicAcls, blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets on"), PUBLIC_ACCESS_BLOCK_FIX)]


def test_public_access_block_names_each_flag_off():
    resources = bucket_set()
    props = {k: v for k, v in resources["block"].props.items() if k != "restrictPublicBuckets"}
    resources["block"] = resource(resources["block"].type, resources["block"].name, {**props, "blockPublicAcls": False})
    assert found("s3-bucket-public-access-blocked", list(resources.values())) == [(
        "data-public-access-block", "blockPublicAcls, restrictPublicBuckets are not true (bucket data): the bucket can be made public",
        "Set blockPublicAcls: true, restrictPublicBuckets: true.")]


def test_kms_missing():
    resources = bucket_set()
    del resources["sse"]
    assert found("s3-bucket-kms-encrypted", list(resources.values())) == [("data", (
        "no aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration for this bucket: "
        "objects get S3-managed keys (SSE-S3), not KMS"), KMS_MISSING_FIX)]


def test_kms_wrong_algorithm():
    assert found("s3-bucket-kms-encrypted", list(bucket_set(sse="AES256").values())) == [(
        "data-encryption", 'rules[0].applyServerSideEncryptionByDefault.sseAlgorithm is "AES256", not aws:kms or aws:kms:dsse',
        KMS_FIX)]
    assert found("s3-bucket-kms-encrypted", list(bucket_set(sse="aws:kms:dsse").values())) == []


def test_kms_rule_without_default():
    resources = bucket_set()
    resources["sse"] = resource(resources["sse"].type, "data-encryption", {"bucket": BUCKET_ID, "rules": [{"bucketKeyEnabled": True}]})
    assert found("s3-bucket-kms-encrypted", list(resources.values())) == [(
        "data-encryption", "rules has no applyServerSideEncryptionByDefault: objects get S3-managed keys (SSE-S3), not KMS", KMS_FIX)]


def test_kms_inline_configuration_of_the_bucket():
    resources = bucket_set()
    del resources["sse"]
    inline = {"rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}}
    resources["bucket"] = resource("aws:s3/bucket:Bucket", "data", {"bucketPrefix": "ml-dev-data-", "serverSideEncryptionConfiguration": inline})
    assert found("s3-bucket-kms-encrypted", list(resources.values())) == [(
        "data", 'serverSideEncryptionConfiguration.rule.applyServerSideEncryptionByDefault.sseAlgorithm is "AES256", not aws:kms or aws:kms:dsse',
        KMS_FIX)]


def test_tls_policy_missing():
    resources = bucket_set()
    del resources["policy"]
    assert found("s3-bucket-tls-only", list(resources.values())) == [
        ("data", "no aws:s3/bucketPolicy:BucketPolicy for this bucket: S3 accepts requests over plain HTTP", TLS_FIX)]


def test_tls_policy_without_secure_transport_deny():
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": ARN}
    assert found("s3-bucket-tls-only", list(bucket_set(statement=statement).values())) == [("data-policy", (
        'policy has no Deny statement with Condition Bool "aws:SecureTransport": "false": S3 accepts requests over plain HTTP'),
        TLS_FIX)]


@pytest.mark.parametrize(("change", "lacks"), [
    ({"Resource": ARN}, f"Resource {ARN}/*"),
    ({"Resource": f"{ARN}/*"}, f"Resource {ARN}"),
    ({"Action": ["s3:GetObject", "s3:PutObject"]}, 'Action "s3:*"'),
    ({"Principal": {"AWS": "arn:aws:iam::111122223333:root"}}, 'Principal "*"'),
])
def test_tls_statement_incomplete(change, lacks):
    statement = {**TLS_STATEMENT, **change}
    assert found("s3-bucket-tls-only", list(bucket_set(statement=statement).values())) == [
        ("data-policy", f"policy.Statement[0] (DenyInsecureTransport) denies requests without TLS, but not for {lacks}", TLS_FIX)]


def test_tls_statement_with_wildcard_resources_covers_the_bucket():
    statement = {**TLS_STATEMENT, "Principal": {"AWS": "*"}, "Action": "*", "Resource": ["arn:aws:s3:::ml-dev-*"]}
    assert found("s3-bucket-tls-only", list(bucket_set(statement=statement).values())) == []


# --- stateful resources ---------------------------------------------------------------------

PROTECT_FIX = ("Set protectStatefulResources: true in the platform config (the resource option protect=True); for a "
               "throwaway stack, disable this rule: rules: {stateful-resources-protected: disabled} in the policy settings "
               '(cloudml plan --policy-config), {"stateful-resources-protected": "disabled"} in the pack config.')


def test_stateful_protected():
    bucket = resource("aws:s3/bucket:Bucket", "data", {}, protect=True)
    efs = resource("aws:efs/fileSystem:FileSystem", "efs", {}, protect=True, retain=True)
    assert found("stateful-resources-protected", [bucket, efs]) == []


def test_stateful_unprotected_even_if_retained():
    bucket = resource("aws:s3/bucket:Bucket", "data", {}, retain=True)
    lustre = resource("aws:fsx/lustreFileSystem:LustreFileSystem", "lustre", {})
    assert found("stateful-resources-protected", [bucket, lustre]) == [
        ("data", "protect is not set on this bucket: `pulumi destroy` or a replacing change removes it from the stack "
                 "(retainOnDelete alone still lets a replacing change swap in a new, empty one)", PROTECT_FIX),
        ("lustre", "protect is not set on this file system: `pulumi destroy` or a replacing change removes it from the stack",
         PROTECT_FIX),
    ]


# --- the sample stacks ----------------------------------------------------------------------

def sample_findings(plan) -> list[tuple[str, str, str]]:
    return [(v.rule, v.resource_name, v.message) for v in evaluate(RULES, plan_resources(plan))]


def test_sample_platform_passes_every_aws_rule(sample_plans):
    """platform-dev passes every AWS rule, advisory ones too: no finding at all. (The Load Balancer
    Controller's upstream IAM policy grants writes on "*"; components/platform/addon_policies.
    harden_lb_controller_policy scopes them, tests/test_lb_controller_policy.py.)"""
    assert sample_findings(sample_plans["platform-dev"]) == []


def test_sample_stacks_have_no_mandatory_findings(sample_plans):
    for name, plan in sample_plans.items():
        mandatory = [v for v in evaluate(RULES, plan_resources(plan)) if v.level == MANDATORY]
        assert mandatory == [], name


def test_team_stacks_have_no_findings(sample_plans):
    assert {name: sample_findings(plan) for name, plan in sample_plans.items() if name.startswith("team-")} == {
        "team-nlp": [], "team-vision": []}


def test_unprotected_platform_is_caught(tmp_path):
    """A copy of platform-dev with protectStatefulResources off: every bucket and the EFS file system."""
    config = sample_config("platform-dev")
    config["cloudml:platform"]["protectStatefulResources"] = False
    write_stack(tmp_path, "platform-dev", config)
    plan = Planner(tmp_path).plan("platform-dev")
    assert sorted(name for rule, name, _ in sample_findings(plan) if rule == "stateful-resources-protected") == [
        "ml-dev-storage-checkpoints", "ml-dev-storage-datasets", "ml-dev-storage-efs", "ml-dev-storage-logs", "ml-dev-storage-models"]
